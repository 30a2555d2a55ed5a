"""The cross-account session: STS AssumeRole into the cluster account (account B).

Why this module exists: the bot runs in account A; the clusters live in
account B. Every EMR call is made with temporary credentials of the role
``ROLE_ARN`` in account B. Those credentials (and their expiry) are kept in
the plugin's persistent storage through a :class:`TokenStore`, so that every
command, every poller tick and the bot after a restart reuse one token until
it is close to expiry.

The refresh itself is botocore's :class:`~botocore.credentials.RefreshableCredentials`
(deferred variant): botocore decides *when* (advisory window: one thread
refreshes, the others keep using the old token; mandatory window: everyone
waits), and serialises refreshes with its own lock, so a burst of commands
causes one AssumeRole. Our ``refresh_using`` first looks in the store, and only
calls STS when the stored token is inside the refresh window or absent.

An ``ExpiredToken``/``InvalidClientTokenId`` answer (token revoked, clock
skew, the role's session policy changed) drops the stored token, builds new
credentials and retries the call once.

Secrets (secret key, session token) are never logged nor put in an error
message; only the access key id's last four characters appear in debug logs.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import CredentialProvider, CredentialResolver, DeferredRefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.loaders import Loader, create_loader

from emrchatops.app.ports import Token, TokenStore
from emrchatops.domain.errors import AccessDeniedError, AwsError, AwsUnreachableError, CredentialsError

log = logging.getLogger("errbot.plugins.emr.crossaccount")

Clock = Callable[[], datetime]

EXPIRED_CODES = frozenset(
    {"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException"}
)
ACCESS_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
THROTTLING_CODES = frozenset({"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"})
_XML_CODE_RE = re.compile(r"<Code>([^<]+)</Code>")
_XML_MESSAGE_RE = re.compile(r"<Message>([^<]*)</Message>")
_DENIED_ACTION_RE = re.compile(r"not authorized to perform:? ?([a-z0-9-]+:[A-Za-z0-9]+)")

# Bounded so a hanging endpoint costs a command at most about
# MAX_ATTEMPTS * (CONNECT_TIMEOUT + READ_TIMEOUT) seconds; the user is told so.
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 3.0
MAX_ATTEMPTS = 3
ANSWER_BOUND_SECONDS = int(MAX_ATTEMPTS * (CONNECT_TIMEOUT + READ_TIMEOUT))

# botocore's windows: refresh advisory 15 min, mandatory 10 min before expiry.
# A stored token is reused only if it is outside the advisory window, otherwise
# botocore would ask for a refresh on every call.
REFRESH_MARGIN = timedelta(minutes=15)


_LOADER_LOCK = threading.Lock()
_LOADER: Loader | None = None


def shared_loader() -> Loader:
    """One botocore data loader for every session and client of the process.

    Each botocore session loads and parses the service models (EMR, STS, CloudWatch: 66–79 ms each)
    again through its own loader; the models never change while the process runs, so one loader,
    and its cache, serves every session: a new session or client no longer re-parses them.
    """
    global _LOADER
    with _LOADER_LOCK:
        if _LOADER is None:
            _LOADER = create_loader()
        return _LOADER


def botocore_session() -> botocore.session.Session:
    """A new botocore session on the shared data loader (its credentials and config its own)."""
    session = botocore.session.Session()
    session.register_component("data_loader", shared_loader())
    return session


def utc_now() -> datetime:
    return datetime.now(UTC)


class MemoryTokenStore:
    """A :class:`TokenStore` in memory, for tools and tests that need no persistence."""

    def __init__(self) -> None:
        self._token: Token | None = None

    def load(self) -> Token | None:
        return self._token

    def save(self, token: Token | None) -> None:
        self._token = token


@dataclass(frozen=True)
class RoleTarget:
    """What to assume and where to call."""

    role_arn: str
    region: str
    external_id: str | None = None
    endpoint_url: str | None = None
    session_seconds: int = 3600
    session_name: str = "emr-chatops"


def error_code(error: ClientError) -> tuple[str, str]:
    """(code, message) of a ClientError, looking inside moto's XML-in-JSON 403 bodies.

    moto answers JSON-protocol services' auth failures with HTTP 403, the code
    ``403`` and an XML error document as the message; AWS puts the real code
    (``AccessDeniedException``, ``UnrecognizedClientException`` …) in the code.
    """
    info = error.response.get("Error", {})
    code = str(info.get("Code", ""))
    message = str(info.get("Message", ""))
    if code.isdigit():
        inner_code = _XML_CODE_RE.search(message)
        inner_message = _XML_MESSAGE_RE.search(message)
        if inner_code:
            code = inner_code.group(1)
            message = inner_message.group(1) if inner_message else message
    return code, message


def translate_client_error(error: ClientError, action: str, where: str) -> AwsError:
    """Map a botocore ``ClientError`` to a domain error with a one-line message.

    AWS says ``AccessDeniedException`` (JSON services) or ``AccessDenied``;
    moto hides the code in the message (see :func:`error_code`). Either
    becomes :class:`AccessDeniedError` naming the action (the one in the
    message when present, else *action*).
    """
    code, message = error_code(error)
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    found = _DENIED_ACTION_RE.search(message)
    if code in ACCESS_DENIED_CODES or found:
        # Some services answer a denied dependent action with another code (EMR's RunJobFlow may say
        # ValidationException: "… is not authorized to perform: iam:PassRole on resource …"): a denial still.
        return AccessDeniedError(found.group(1) if found else action, where)
    if code in THROTTLING_CODES:
        return AwsError(f"AWS is throttling {action} ({where}) even after retries; try again in a minute.")
    if isinstance(status, int) and status >= 500:
        return AwsError(f"AWS answered {action} with a server error ({status}); try again in a minute.")
    first_line = message.splitlines()[0][:200] if message else code
    return AwsError(f"AWS refused {action} ({where}): {code}: {first_line}")


def translate_transport_error(error: BotoCoreError, action: str, where: str) -> AwsError:
    """Map a transport/credential failure to a domain error."""
    if isinstance(error, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        return AwsUnreachableError(
            f"AWS unreachable: {action} ({where}) got no answer within {ANSWER_BOUND_SECONDS} s; "
            "check the network or try again later."
        )
    if isinstance(error, ParamValidationError):
        # botocore checks a request against AWS's model before sending it (a template's wrong type).
        report = " ".join(str(error).split())[:300]
        return AwsError(f"{action} ({where}) was not sent: {report}")
    if isinstance(error, NoCredentialsError):
        return CredentialsError(
            "The bot has no AWS credentials of its own (account A): give the host an instance "
            "profile or set AWS_PROFILE / AWS_ACCESS_KEY_ID, then `!plugin reload EMR`."
        )
    return AwsError(f"AWS call {action} ({where}) failed: {type(error).__name__}")


class CrossAccountSession:
    """boto3 clients for account B, on one shared, stored, refreshed AssumeRole token.

    ``client(service)`` returns a client bound to the current credentials;
    ``call(service, operation, **params)`` makes a call and transparently
    re-assumes once when AWS says the token has expired. Thread-safe.
    """

    def __init__(
        self,
        target: RoleTarget,
        store: TokenStore,
        *,
        base_session: boto3.Session | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.target = target
        self._tokens = store
        self._base = base_session or boto3.Session(botocore_session=botocore_session())
        self._clock = clock
        self._lock = threading.Lock()
        self._generation = 0
        self._clients: dict[tuple[str, str], Any] = {}
        self._session = self._new_botocore_session()
        self.assume_count = 0  # AssumeRole calls made by this process (reported by the benchmarks)

    # -- credentials ---------------------------------------------------------
    def _new_botocore_session(self) -> botocore.session.Session:
        # One credentials object (and so one botocore refresh lock) per generation,
        # handed to botocore through its own resolver component.
        credentials = DeferredRefreshableCredentials(
            refresh_using=self._refresh, method=_StoredRoleProvider.METHOD, time_fetcher=self._clock
        )
        session = botocore_session()
        session.register_component("credential_provider", CredentialResolver([_StoredRoleProvider(credentials)]))
        session.set_config_variable("region", self.target.region)
        return session

    def _refresh(self) -> dict[str, str]:
        """``refresh_using`` for botocore: the stored token if still good, else a new AssumeRole."""
        stored = self._tokens.load()
        if stored and stored.get("role_arn") == self.target.role_arn:
            expiry = datetime.fromisoformat(stored["expiry_time"])
            if expiry - self._clock() > REFRESH_MARGIN:
                return _metadata(stored)
        token = self._assume_role()
        self._tokens.save(token)
        return _metadata(token)

    def _assume_role(self) -> Token:
        params: dict[str, Any] = {
            "RoleArn": self.target.role_arn,
            "RoleSessionName": self.target.session_name,
            "DurationSeconds": self.target.session_seconds,
        }
        if self.target.external_id:
            params["ExternalId"] = self.target.external_id
        sts = self._base.client(
            "sts", region_name=self.target.region, endpoint_url=self.target.endpoint_url, config=_config()
        )
        where = f"role {self.target.role_arn}"
        try:
            response = sts.assume_role(**params)
        except ClientError as error:
            raise translate_client_error(error, "sts:AssumeRole", where) from None
        except BotoCoreError as error:
            raise translate_transport_error(error, "sts:AssumeRole", where) from None
        credentials = response["Credentials"]
        self.assume_count += 1
        expiry: datetime = credentials["Expiration"]
        log.info(
            "Assumed %s (key …%s), valid until %s",
            self.target.role_arn,
            credentials["AccessKeyId"][-4:],
            expiry.isoformat(),
        )
        return {
            "role_arn": self.target.role_arn,
            "access_key": credentials["AccessKeyId"],
            "secret_key": credentials["SecretAccessKey"],
            "token": credentials["SessionToken"],
            "expiry_time": expiry.astimezone(UTC).isoformat(),
        }

    def invalidate(self, generation: int | None = None) -> None:
        """Drop the stored token and the clients built on it (once per generation)."""
        with self._lock:
            if generation is not None and generation != self._generation:
                return  # another thread already replaced the credentials this call used
            self._tokens.save(None)
            self._generation += 1
            self._clients = {}
            self._session = self._new_botocore_session()

    # -- clients -------------------------------------------------------------
    def client(self, service: str, region: str | None = None) -> tuple[Any, int]:
        """A client for *service* in account B (in *region*, by default the target's), and the credentials
        generation it uses. Every region's clients share this session's one token (DESIGN §17)."""
        region = region or self.target.region
        with self._lock:
            client = self._clients.get((service, region))
            if client is None:
                client = self._session.create_client(
                    service, region_name=region, endpoint_url=self.target.endpoint_url, config=_config()
                )
                self._clients[(service, region)] = client
            return client, self._generation

    def in_region(self, region: str) -> RegionalSession:
        """This session's calls in *region* (the same token)."""
        return RegionalSession(self, region)

    def call(
        self, service: str, operation: str, action: str, *, region: str | None = None, **params: Any
    ) -> dict[str, Any]:
        """Call ``client.<operation>(**params)`` (in *region*); errors become domain errors naming *action*."""
        where = f"account {self.account_id}, {region or self.target.region}"
        for attempt in (1, 2):
            client, generation = self.client(service, region)
            try:
                response: dict[str, Any] = getattr(client, operation)(**params)
                return response
            except ClientError as error:
                code, _ = error_code(error)
                if code in EXPIRED_CODES and attempt == 1:
                    log.warning("AWS said %s for %s: re-assuming the role and retrying once", code, action)
                    self.invalidate(generation)
                    continue
                raise translate_client_error(error, action, where) from None
            except BotoCoreError as error:
                raise translate_transport_error(error, action, where) from None
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def account_id(self) -> str:
        return self.target.role_arn.split(":")[4]

    def base_identity(self) -> dict[str, str]:
        """Account A's own identity (``sts:GetCallerIdentity``), for ``!emr doctor``."""
        sts = self._base.client(
            "sts", region_name=self.target.region, endpoint_url=self.target.endpoint_url, config=_config()
        )
        try:
            identity = sts.get_caller_identity()
        except ClientError as error:
            raise translate_client_error(error, "sts:GetCallerIdentity", "the bot's own account") from None
        except BotoCoreError as error:
            raise translate_transport_error(error, "sts:GetCallerIdentity", "the bot's own account") from None
        return {"account": str(identity["Account"]), "arn": str(identity["Arn"])}

    def available_regions(self, service: str) -> list[str]:
        """Regions the SDK knows for *service* in the role's partition (offline endpoint data)."""
        partition = self.target.role_arn.split(":")[1]
        return list(self._base.get_available_regions(service, partition))


class RegionalSession:
    """One region's view of a :class:`CrossAccountSession`: its calls go to *region*, on the session's token."""

    def __init__(self, session: CrossAccountSession, region: str) -> None:
        self.session = session
        self.region = region

    @property
    def target(self) -> RoleTarget:
        return replace(self.session.target, region=self.region)

    @property
    def account_id(self) -> str:
        return self.session.account_id

    def call(self, service: str, operation: str, action: str, **params: Any) -> dict[str, Any]:
        return self.session.call(service, operation, action, region=self.region, **params)

    def client(self, service: str) -> tuple[Any, int]:
        return self.session.client(service, self.region)


class _StoredRoleProvider(CredentialProvider):  # type: ignore[misc]  # botocore is untyped
    """A botocore credential provider that always answers with our refreshable credentials."""

    METHOD = "emr-chatops-assume-role"
    CANONICAL_NAME = "emr-chatops"

    def __init__(self, credentials: DeferredRefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> DeferredRefreshableCredentials:
        return self._credentials


def _config() -> Config:
    return Config(
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        # total_max_attempts counts the first request too ("max_attempts" would mean retries:
        # one attempt more than ANSWER_BOUND_SECONDS promises, measured by `python -m bench --only hang`).
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
    )


def _metadata(token: Token) -> dict[str, str]:
    return {
        "access_key": token["access_key"],
        "secret_key": token["secret_key"],
        "token": token["token"],
        "expiry_time": token["expiry_time"],
    }
