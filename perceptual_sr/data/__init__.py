"""Training data: the dataset of prepared pairs, the degradations, and prepare_data.py's preparation."""
