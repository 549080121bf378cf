"""Parsers of setting values, shared by flags, environment variables and the config file:
each returns the typed value or raises ``ConfigError`` with one line for the operator.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

from mesh.address import split_host_port
from mesh.model import is_dns_label


class ConfigError(ValueError):
    """A setting with a bad value; the message is one line for the operator."""


def label_value(value: str) -> str:
    if not is_dns_label(value):
        raise ValueError("must be an RFC 1123 label (a-z, 0-9, '-', at most 63 characters)")
    return value


def optional_label(value: str) -> str:
    return label_value(value) if value else ""


def host_port(value: str) -> str:
    split_host_port(value)
    return value


def address_port(value: str) -> str:
    """HOST:PORT where HOST is an IP address a client can reach (not a wildcard) and PORT is
    not 0: an address to advertise in a DNS record."""
    host, port = split_host_port(value)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError("must be IP:PORT (an IP address, not a host name)") from None
    if ip.is_unspecified or port == 0:
        raise ValueError("must be an address clients can reach, not a wildcard or port 0")
    return value


def host_ports(value: str | list[str]) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [v for v in str(value).split(",")]
    return tuple(host_port(str(v).strip()) for v in items if str(v).strip())


def zone_value(value: str) -> str:
    name = value.strip().rstrip(".").lower()
    labels = name.split(".")
    if not name or any(not is_dns_label(label) for label in labels) or len(name) > 200:
        raise ValueError("must be a DNS name such as clusterset.local")
    return name


def int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(str(value), 10)
        except ValueError:
            raise ValueError(f"must be an integer {low}-{high}") from None
        if not low <= number <= high:
            raise ValueError(f"must be an integer {low}-{high}")
        return number

    return parse


def seconds(low: float, high: float) -> Callable[[str], float]:
    return float_range(low, high, "of seconds ")


def float_range(low: float, high: float, unit: str = "") -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(str(value))
        except ValueError:
            raise ValueError(f"must be a number {unit}{low}-{high}") from None
        if not low <= number <= high:
            raise ValueError(f"must be a number {unit}{low}-{high}")
        return number

    return parse


def bool_value(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def path_value(value: str) -> Path:
    if not str(value):
        raise ValueError("must be a path")
    return Path(str(value)).expanduser()


def choice(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if str(value) not in allowed:
            raise ValueError(f"must be {', '.join(allowed[:-1])} or {allowed[-1]}")
        return str(value)

    return parse


def log_level(value: str) -> str:
    level = str(value).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be debug, info, warning or error")
    return level
