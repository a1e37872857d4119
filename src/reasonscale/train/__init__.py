"""Thin trainers over transformers / PEFT: process reward models."""
