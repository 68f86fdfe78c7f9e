"""What every command shares: the console, one-line errors, settings, JSON output."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import typer
from rich.console import Console

from ..settings import Settings, SettingsError

out = Console()


class CliError(Exception):
    """A failure to report as one line."""


def quiet_kafka_logger() -> logging.Logger:
    """librdkafka's own retries are noise on a terminal; failures reach us as errors."""
    logger = logging.getLogger("hookstream.cli.kafka")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


def settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise CliError(str(exc)) from None


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def group(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True)
