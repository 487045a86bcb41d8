"""The Gradio demo, its server and the Hugging Face Space deploy."""
