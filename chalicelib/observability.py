"""Powertools logger, tracer and metrics shared by every entry point."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger(service="sohbet")
tracer = Tracer(service="sohbet")
metrics = Metrics(namespace="sohbet", service="sohbet")
