"""TrainConfig: validation names the bad value, flags come from the fields, the learning-rate schedule."""

import argparse
import dataclasses

import pytest

import train as train_script
from perceptual_sr import SRConfig
from perceptual_sr.training.config import TrainConfig, learning_rate_at
from perceptual_sr.utils.config_flags import add_flags, from_flags, setting


@pytest.mark.parametrize("bad, name", [(dict(batch_size=0), "batch_size"), (dict(precision="fp8"), "precision"),
                                       (dict(learning_rate=-1.0), "learning_rate"),
                                       (dict(feature_layers="relu9_9"), "relu9_9"), (dict(steps=0), "steps"),
                                       (dict(ema_decay=1.0), "ema_decay"), (dict(lr_schedule="step"), "lr_schedule"),
                                       (dict(hatch_weight=-1.0), "hatch_weight")])
def test_bad_train_config_names_the_value(bad, name):
    with pytest.raises(ValueError, match=name):
        TrainConfig(data="x", **bad)


def test_flags_are_generated_from_the_dataclasses():
    model_config, train_config = train_script.parse_args(
        ["--data", "somewhere", "--channels", "8", "--residual-blocks", "1", "--upsampler", "resize-conv",
         "--crop-size", "16", "--no-channels-last", "--steps", "2", "--val-dir", "none"])
    assert model_config == SRConfig(channels=8, residual_blocks=1, upsampler="resize-conv")
    assert train_config == TrainConfig(data="somewhere", crop_size=16, channels_last=False, steps=2, val_dir=None)


def test_learning_rate_flag_keeps_its_old_name():
    for flag in ("--learning-rate", "--lr"):
        assert train_script.parse_args(["--data", "x", flag, "2e-4"])[1].learning_rate == 2e-4


def test_setting_writes_help_choices_aliases_and_required_fields(capsys):
    @dataclasses.dataclass
    class Example:
        source: str = setting(help="where from")
        mode: str = setting("fast", "how", choices=("fast", "slow"), aliases=("--speed",), resumable=True)
        hidden: int = setting(3, "not a flag", flag=False)
        items: list = setting(help="several", default_factory=list)

    parser = argparse.ArgumentParser()
    add_flags(parser, Example)
    assert from_flags(Example, vars(parser.parse_args(["--source", "a", "--speed", "slow"]))) == \
        Example(source="a", mode="slow")
    assert "--hidden" not in parser.format_help() and "where from" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--source", "a", "--mode", "medium"])
    assert "invalid choice: 'medium'" in capsys.readouterr().err
    with pytest.raises(TypeError):
        Example()  # no default: required
    assert Example(source="b").items == []


def test_tuple_fields_take_several_values():
    @dataclasses.dataclass
    class Example:
        folders: tuple[str, ...] = setting(help="one or more")
        out: str = setting(help="where to")
        sizes: tuple[int, ...] = setting((8,), "side lengths")

    parser = argparse.ArgumentParser()
    add_flags(parser, Example, positional=("folders", "out"))
    assert from_flags(Example, vars(parser.parse_args(["a", "o"]))) == Example(folders=("a",), out="o")
    assert from_flags(Example, vars(parser.parse_args(["a", "b", "o", "--sizes", "1", "2"]))) == \
        Example(folders=("a", "b"), out="o", sizes=(1, 2))
    assert "(default: 8)" in parser.format_help()


def test_learning_rate_schedule():
    constant = TrainConfig(data="x", learning_rate=1e-3)
    assert learning_rate_at(0, 100, constant) == learning_rate_at(99, 100, constant) == 1e-3
    cosine = TrainConfig(data="x", learning_rate=1e-3, lr_schedule="cosine", warmup_steps=10)
    assert learning_rate_at(0, 110, cosine) == pytest.approx(1e-4)
    assert learning_rate_at(10, 110, cosine) == pytest.approx(1e-3)
    assert learning_rate_at(60, 110, cosine) == pytest.approx(5e-4)
    assert learning_rate_at(110, 110, cosine) == pytest.approx(0.0, abs=1e-12)
