"""Tracking URIs with credentials (`https://user:token@host`): used, never stored or shown.

The user info is taken out of the URI and handed to MLflow through its own environment variables
(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD), which its client sends as basic auth. Everything that
is written or printed (config.yaml, the params, mlflow_run.json, the outbox, the launcher's lines) carries the
URI with the user info replaced by `***`, or without it.
"""
from __future__ import annotations

import os
import re
import sys
from urllib.parse import unquote, urlsplit, urlunsplit

ENV_USER, ENV_PASSWORD = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"
USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def redact(text: str) -> str:
    """Any URI's user info in `text` replaced by `***`."""
    return USERINFO.sub(r"\g<scheme>***@", text)


def split(uri: str) -> tuple[str, str | None, str | None]:
    """(the URI without user info, user, password)."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri, None, None
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, unquote(parts.username or ""), unquote(parts.password) if parts.password is not None else None


def adopt(uri: str | None) -> str | None:
    """The URI to use and store: credentials in it move to MLflow's environment variables (for this job and
    the processes it starts), with one line that says where to put them for the next."""
    if uri is None:
        return None
    clean, user, password = split(uri)
    if user is None and password is None:
        return uri
    os.environ[ENV_USER] = user or ""
    if password is not None:
        os.environ[ENV_PASSWORD] = password
    print(f"note: logging.mlflow.tracking_uri carries credentials; they are used, not stored ({clean} is): set "
          f"{ENV_USER} and {ENV_PASSWORD} instead, e.g. for vt-mlflow-sync", file=sys.stderr, flush=True)
    return clean


def redacted_config(raw):
    """A copy of a resolved DictConfig whose tracking URI shows no credentials."""
    from omegaconf import OmegaConf

    copy = OmegaConf.create(OmegaConf.to_container(raw))
    uri = OmegaConf.select(copy, "logging.mlflow.tracking_uri")
    if isinstance(uri, str):
        OmegaConf.update(copy, "logging.mlflow.tracking_uri", redact(uri))
    return copy
