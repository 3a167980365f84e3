"""Where MLflow keeps an experiment: the spec's tracking URI resolved against its folder, credentials kept out of it.

Light on purpose (no MLflow import): the checks run it before anything heavy loads.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["resolve_tracking_uri"]


def resolve_tracking_uri(uri: str, base_dir: str | Path) -> str:
    """The tracking URI raymlx uses: a relative ``sqlite:///file.db`` is made relative to the spec's folder, not
    to the working directory, and credentials in an HTTP URI (``http://alice:s3cret@host``) move to MLflow's
    ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``, so that the URI raymlx prints, logs and saves
    (Tune's experiment state included) never holds them.
    """
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/") and ":memory:" not in uri:
        return prefix + str((Path(base_dir) / uri[len(prefix):]).resolve())
    return _credentials_to_environment(uri)


def _credentials_to_environment(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return uri
    user, _, password = parts.netloc.rpartition("@")[0].partition(":")
    os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(user)
    if password:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(password)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
