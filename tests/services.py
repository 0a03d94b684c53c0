"""The services some tests need (PostgreSQL, Redis, RabbitMQ on 127.0.0.1): reach them, or skip with the reason.

When the environment variable ``CI`` is set, an unreachable service fails the test instead of skipping it: CI
must run every service test. Each test makes its own database, key prefix or queue with a unique name and
removes it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator

import pytest

POSTGRES = ("PostgreSQL", 5432)
REDIS = ("Redis", 6379)
RABBITMQ = ("RabbitMQ", 5672)
HOST = "127.0.0.1"


def require(service: tuple[str, int]) -> None:
    """Skip (or, under CI, fail) the calling test unless ``service`` answers on 127.0.0.1."""
    name, port = service
    try:
        with socket.create_connection((HOST, port), timeout=2):
            return
    except OSError as exc:
        reason = f"{name} is not reachable on {HOST}:{port} ({exc})"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run every service test")
    pytest.skip(reason)


def unique_name(prefix: str) -> str:
    """A name no other test run uses (lower case letters, digits and ``_``)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def postgres_url(database: str) -> str:
    return f"postgresql://postgres@{HOST}:5432/{database}"


@contextlib.contextmanager
def postgres_database(prefix: str = "flaghooks_test") -> Iterator[str]:
    """A fresh PostgreSQL database for one test; yields its URL and drops it (``WITH (FORCE)``) after."""
    require(POSTGRES)
    import psycopg

    name = unique_name(prefix)
    with psycopg.connect(postgres_url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url(name)
    finally:
        with psycopg.connect(postgres_url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def redis_prefix(prefix: str = "flaghooks-test") -> Iterator[str]:
    """A key prefix of one test's own on the local Redis; every key under it is deleted after."""
    require(REDIS)
    import redis

    name = f"{unique_name(prefix)}:"
    try:
        yield name
    finally:
        client = redis.Redis(host=HOST, port=6379)
        try:
            keys = list(client.scan_iter(match=f"{name}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


RABBITMQ_URL = f"amqp://guest:guest@{HOST}:5672//"


@contextlib.contextmanager
def rabbitmq_queue(prefix: str = "flaghooks-test") -> Iterator[str]:
    """A queue name of one test's own on the local RabbitMQ (the default vhost: this RabbitMQ has no management
    API to make vhosts with); the queue and the exchange of the same name (Celery's default) are deleted after."""
    require(RABBITMQ)
    import kombu

    name = unique_name(prefix)
    try:
        yield name
    finally:
        with kombu.Connection(RABBITMQ_URL) as connection:
            channel = connection.default_channel
            channel.queue_delete(name)
            channel.exchange_delete(name)
