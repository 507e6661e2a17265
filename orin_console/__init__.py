"""Orin Console: run several local LLMs on a Jetson Orin Nano from one keyboard-driven console."""

__version__ = "0.1.0"
