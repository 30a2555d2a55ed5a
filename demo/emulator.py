"""A local AWS emulator for the demo and the tests: moto's server on loopback.

The emulator plays two AWS accounts:

* account A (moto's default account) is where the bot runs; its credentials are
  whatever static keys the bot is given (``BOT_KEYS``), or an IAM user created
  by :meth:`Emulator.enforce_iam`;
* account B holds the cluster(s) and the role ``cre`` that account A assumes.

Every request the server receives is counted by service and action
(:attr:`Emulator.requests`), so tests can assert that AssumeRole was called once.
It runs in-process on a thread; nothing leaves the loopback interface.

A cluster someone starts through the server (the bot's ``!emr start``; not the
emulator's own :meth:`Emulator.run_cluster`) goes through the start sequence the
emulator is set to: moto's own, ``WAITING`` at once (the default); *held* in
``STARTING`` until a test moves it (:meth:`Emulator.advance_start`,
:meth:`Emulator.fail_start`); or *played*, ``STARTING`` then ``BOOTSTRAPPING``
then ``WAITING`` over some seconds of real time (the demo). EMR's
AutoTerminationPolicy, which moto lacks, is added by :mod:`demo.moto_emr_resources`.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from werkzeug.serving import BaseWSGIServer, make_server

ACCOUNT_A = "123456789012"  # moto's default account: the bot's own identity
ACCOUNT_B = "210987654321"  # the analytics account that owns the clusters
ACCOUNT_C = "109876543210"  # a second team's account (the two-target demo, DESIGN §17)
REGION = "ap-northeast-1"
ROLE_NAME = "cre"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_B}:role/{ROLE_NAME}"
EXTERNAL_ID = "emr-chatops-demo"
MANAGED_TAG = ("emr-chatops", "true")

# Static keys for account A when IAM is not enforced: moto maps unknown keys to
# its default account. Not secrets; the emulator accepts anything.
BOT_KEYS = {"aws_access_key_id": "AKIADEMOBOTACCOUNTA1", "aws_secret_access_key": "demo-secret-not-real"}

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def action_of(environ: Environ, body: bytes) -> tuple[str, str]:
    """(service, action) of an AWS request, for the request counter."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:  # JSON protocol, e.g. ElasticMapReduce.ListClusters
        prefix, _, action = target.partition(".")
        return ("emr" if prefix == "ElasticMapReduce" else prefix.lower(), action)
    fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    fields.update(urllib.parse.parse_qs(environ.get("QUERY_STRING", "")))
    action = fields.get("Action", ["?"])[0]
    auth = environ.get("HTTP_AUTHORIZATION", "")
    service = "?"
    if "Credential=" in auth:  # .../<date>/<region>/<service>/aws4_request
        parts = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        service = parts[3] if len(parts) > 3 else "?"
    return (service, action)


class _Counting:
    """WSGI middleware counting requests and optionally failing some of them.

    It also runs DynamoDB requests one at a time. DynamoDB applies a conditional write atomically
    (the condition and the write, per item); moto (5.2) checks the condition and then writes with
    no lock, so on its threaded server two concurrent compare-and-set writes over the same revision
    could both succeed — a lost update real DynamoDB never makes (tests/test_storage_versioned.py
    found it). One lock over every DynamoDB request restores that atomicity, and more.
    """

    def __init__(self, app: Callable[[Environ, StartResponse], Iterable[bytes]]) -> None:
        self.app = app
        self.requests: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()
        self.dynamodb = threading.Lock()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        if not environ.get("PATH_INFO", "").startswith("/moto-api"):
            with self.lock:
                self.requests[action_of(environ, body)] += 1
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with self.dynamodb:
                return list(self.app(environ, start_response))  # the whole answer made under the lock
        return self.app(environ, start_response)


SEED_HEADER = "x-emulator-seed"  # on the emulator's own requests: its clusters skip the start sequence


def _seeding(request: Any, **_: Any) -> None:
    request.headers[SEED_HEADER] = "1"


STARTING_STATES = ("STARTING", "BOOTSTRAPPING")


# The thread handling a RunJobFlow whose start the emulator holds or plays: moto must leave the new
# cluster STARTING (its Cluster() runs start_cluster() then run_bootstrap_actions(), which makes it
# WAITING at once). Without this, a listing running meanwhile on another server thread saw the new
# cluster WAITING before the start sequence took over: "ready after 0s", then STARTING again.
_STARTING = threading.local()
_BOOTSTRAP_PATCHED = threading.Lock()


def _hold_new_clusters_starting() -> None:
    """Patch moto's Cluster once: no bootstrap (→ WAITING) in a thread whose RunJobFlow is held or played."""
    from moto.emr.models import Cluster

    with _BOOTSTRAP_PATCHED:
        if getattr(Cluster.run_bootstrap_actions, "emulator_patched", False):
            return
        original = Cluster.run_bootstrap_actions

        def run_bootstrap_actions(self: Any) -> None:
            if getattr(_STARTING, "held", False):
                return  # start_cluster() made it STARTING; the emulator moves it on
            original(self)

        run_bootstrap_actions.emulator_patched = True  # type: ignore[attr-defined]
        Cluster.run_bootstrap_actions = run_bootstrap_actions  # type: ignore[method-assign]


class _Starts:
    """WSGI middleware: after a RunJobFlow that moto accepted, hand the new cluster's id and the request
    (the parameters as sent) to *on_start*; while moto creates it, *holding()* says whether the new
    cluster stays STARTING (never seen WAITING by a concurrent listing)."""

    def __init__(
        self,
        app: Callable[[Environ, StartResponse], Iterable[bytes]],
        on_start: Callable[[str, dict[str, Any]], None],
        holding: Callable[[], bool] = lambda: False,
    ):
        self.app = app
        self.on_start = on_start
        self.holding = holding
        _hold_new_clusters_starting()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        seeding = environ.get("HTTP_" + SEED_HEADER.upper().replace("-", "_"))
        if environ.get("HTTP_X_AMZ_TARGET") != "ElasticMapReduce.RunJobFlow" or seeding:
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(request)
        status: list[str] = []

        def recording(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(code)
            return start_response(code, headers, exc_info)

        _STARTING.held = self.holding()
        try:
            body = b"".join(self.app(environ, recording))
        finally:
            _STARTING.held = False
        if status and status[0].startswith("200"):
            self.on_start(str(json.loads(body)["JobFlowId"]), json.loads(request or b"{}"))  # before the caller hears
        return [body]


@dataclass(frozen=True)
class Seeded:
    """Ids of what :meth:`Emulator.seed` created."""

    managed_id: str
    unmanaged_id: str


class Emulator:
    """moto's server on a free loopback port, with a request counter."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        from demo import moto_emr_resources

        moto_emr_resources.install()  # IAM enforcement checks EMR calls against the cluster's ARN, not "*"
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        self._start_mode = "moto"  # "moto": WAITING at once; "held": until moved; "played": timed (see play_starts)
        self._play_seconds = (0.0, 0.0)
        self._timers: list[threading.Timer] = []
        self.started: list[str] = []  # clusters started through the server by others than the emulator, in order
        self.start_requests: dict[str, dict[str, Any]] = {}  # their RunJobFlow parameters, as sent
        self._counting = _Counting(
            _Starts(DomainDispatcherApplication(create_backend_app), self._on_start, lambda: self._start_mode != "moto")
        )
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, self._counting, threaded=True, request_handler=MotoRequestHandler
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._emr_b: Any = None
        self._cloudwatch_b: Any = None
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)

    # -- lifecycle -------------------------------------------------------
    def start(self) -> Emulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every resource and every count (moto's reset API); starts are moto's again."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._start_mode = "moto"
        self.started.clear()
        self.start_requests.clear()
        self._post("/moto-api/reset", b"")
        self.set_iam_enforcement(False)
        self.reset_counts()

    # -- counters --------------------------------------------------------
    @property
    def requests(self) -> Counter[tuple[str, str]]:
        with self._counting.lock:
            return Counter(self._counting.requests)

    def count(self, action: str) -> int:
        return sum(n for (_, a), n in self.requests.items() if a == action)

    def reset_counts(self) -> None:
        with self._counting.lock:
            self._counting.requests.clear()

    # -- clients ---------------------------------------------------------
    def client(self, service: str, account: str = ACCOUNT_A, *, region: str = REGION, **keys: str) -> Any:
        """A boto3 client acting in *account* (moto's account header) in *region*, for seeding and checks."""
        creds = keys or BOT_KEYS
        client = boto3.client(service, region_name=region, endpoint_url=self.url, **creds)
        if account != ACCOUNT_A and not keys:

            def _header(request: Any, **_: Any) -> None:
                request.headers["x-moto-account-id"] = account

            client.meta.events.register("before-sign", _header)
        return client

    def emr_b(self) -> Any:
        """An EMR client in account B, bypassing the bot (one client, reused: boto3 clients are thread-safe).

        Its clusters are the emulator's own: they skip the start sequence (WAITING at once).
        """
        if self._emr_b is None:
            client = self.client("emr", ACCOUNT_B)
            client.meta.events.register("before-sign", _seeding)
            self._emr_b = client
        return self._emr_b

    # -- seeding ---------------------------------------------------------
    def seed(
        self,
        *,
        managed_names: Iterable[str] = ("analytics",),
        unmanaged_names: Iterable[str] = ("etl-nightly",),
        permissions: dict[str, Any] | None = None,
        trust: dict[str, Any] | None = None,
    ) -> Seeded:
        """Create role ``cre`` in account B and the clusters; return their ids.

        *permissions* and *trust* default to the policies shipped in ``deploy/``.
        """
        from demo import policies

        iam_b = self.client("iam", ACCOUNT_B)
        iam_b.create_role(
            RoleName=ROLE_NAME,
            AssumeRolePolicyDocument=json.dumps(trust or policies.trust_policy(ACCOUNT_A, EXTERNAL_ID)),
            MaxSessionDuration=43200,
        )
        iam_b.put_role_policy(
            RoleName=ROLE_NAME,
            PolicyName="emr-chatops",
            PolicyDocument=json.dumps(permissions or policies.permission_policy()),
        )
        managed = [self.run_cluster(n, managed=True) for n in managed_names]
        unmanaged = [self.run_cluster(n, managed=False) for n in unmanaged_names]
        return Seeded(managed_id=managed[0] if managed else "", unmanaged_id=unmanaged[0] if unmanaged else "")

    def seed_account(
        self, account: str, regions: Iterable[str] = (REGION,), *, trust: dict[str, Any] | None = None
    ) -> None:
        """Create role ``cre`` in another account (as :meth:`seed` does in account B), with the shipped trust
        policy and the shipped permissions filled in for that account, once per region (one policy each)."""
        from demo import policies

        iam = self.client("iam", account)
        iam.create_role(
            RoleName=ROLE_NAME,
            AssumeRolePolicyDocument=json.dumps(trust or policies.trust_policy(ACCOUNT_A, EXTERNAL_ID)),
            MaxSessionDuration=43200,
        )
        for region in regions:
            permissions = policies.permission_policy(account_b_id=account, region=region)
            iam.put_role_policy(
                RoleName=ROLE_NAME, PolicyName=f"emr-chatops-{region}", PolicyDocument=json.dumps(permissions)
            )

    def emr_in(self, account: str, region: str) -> Any:
        """An EMR client in *account* and *region*, bypassing the bot (its clusters skip the start sequence)."""
        if (account, region) == (ACCOUNT_B, REGION):
            return self.emr_b()
        client = self.client("emr", account, region=region)
        client.meta.events.register("before-sign", _seeding)
        return client

    def run_cluster(
        self,
        name: str,
        *,
        managed: bool = True,
        protected: bool = False,
        tags: list[dict[str, str]] | None = None,
        account: str = ACCOUNT_B,
        region: str = REGION,
    ) -> str:
        """Start a cluster in *account* and *region* (account B, REGION by default; WAITING at once in moto);
        return its id.

        Tagged ``MANAGED_TAG`` when *managed*, else ``team=etl``; *tags* replaces either.
        """
        if tags is None:
            tags = [{"Key": MANAGED_TAG[0], "Value": MANAGED_TAG[1]}] if managed else [{"Key": "team", "Value": "etl"}]
        response = self.emr_in(account, region).run_job_flow(
            Name=name,
            ReleaseLabel="emr-7.5.0",
            Instances={
                "MasterInstanceType": "m5.xlarge",
                "SlaveInstanceType": "m5.xlarge",
                "InstanceCount": 3,
                "KeepJobFlowAliveWhenNoSteps": True,
                "TerminationProtected": protected,
            },
            JobFlowRole="EMR_EC2_DefaultRole",
            ServiceRole="EMR_DefaultRole",
            VisibleToAllUsers=True,
            Tags=tags,
        )
        return str(response["JobFlowId"])

    def cluster_state(self, cluster_id: str) -> str:
        """The cluster's real state, read in-process (no request: counts and IAM are unaffected)."""
        return str(self._moto_cluster(cluster_id).state)

    @staticmethod
    def _moto_cluster(cluster_id: str) -> Any:
        # Look in every region of the accounts the emulator seeds.
        from moto.emr.models import emr_backends

        for account in (ACCOUNT_B, ACCOUNT_C):
            for backend in emr_backends[account].values():
                if cluster_id in backend.clusters:
                    return backend.clusters[cluster_id]
        raise KeyError(cluster_id)

    def add_finished_step(self, cluster_id: str, started: datetime, ended: datetime) -> None:
        """A step that ran and ended between two looks at the cluster (moto runs none: its times are set here)."""
        self.emr_b().add_job_flow_steps(
            JobFlowId=cluster_id,
            Steps=[{"Name": "query", "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["true"]}}],
        )
        cluster = self._moto_cluster(cluster_id)
        step = cluster.steps[-1]
        step.state, step.start_date_time, step.end_date_time = "COMPLETED", started, ended
        cluster.state = "WAITING"  # moto sets RUNNING when a step is added; it is over

    def put_is_idle(self, cluster_id: str, at: datetime, value: float) -> None:
        """Publish one datapoint of EMR's ``IsIdle`` metric for the cluster in account B (1 idle, 0 YARN work)."""
        if self._cloudwatch_b is None:
            self._cloudwatch_b = self.client("cloudwatch", ACCOUNT_B)
        self._cloudwatch_b.put_metric_data(
            Namespace="AWS/ElasticMapReduce",
            MetricData=[
                {
                    "MetricName": "IsIdle",
                    "Dimensions": [{"Name": "JobFlowId", "Value": cluster_id}],
                    "Timestamp": at,
                    "Value": value,
                }
            ],
        )

    # -- starts (DESIGN §12) ------------------------------------------------------
    def hold_starts(self) -> None:
        """Clusters started from now on stay STARTING until :meth:`advance_start` or :meth:`fail_start` moves them."""
        self._start_mode = "held"

    def play_starts(self, starting: float, bootstrapping: float) -> None:
        """Clusters started from now on are STARTING for *starting* seconds, then BOOTSTRAPPING for
        *bootstrapping* seconds, then WAITING, on real time (the demo: the notices can be seen)."""
        self._start_mode = "played"
        self._play_seconds = (starting, bootstrapping)

    def _on_start(self, cluster_id: str, request: dict[str, Any]) -> None:
        self.started.append(cluster_id)
        self.start_requests[cluster_id] = request
        if self._start_mode == "moto":
            return
        cluster = self._moto_cluster(cluster_id)
        cluster.state, cluster.ready_datetime = "STARTING", None
        if self._start_mode == "played":
            starting, bootstrapping = self._play_seconds
            for delay, state in ((starting, "BOOTSTRAPPING"), (starting + bootstrapping, "WAITING")):
                timer = threading.Timer(delay, self._played, args=(cluster_id, state))
                timer.daemon = True
                self._timers.append(timer)
                timer.start()

    def _played(self, cluster_id: str, state: str) -> None:
        try:
            if self.cluster_state(cluster_id) in STARTING_STATES:  # not if terminated meanwhile
                self.advance_start(cluster_id, state)
        except KeyError:
            pass  # the emulator was reset meanwhile

    def advance_start(self, cluster_id: str, state: str) -> None:
        """Move a starting cluster on: to BOOTSTRAPPING, or to WAITING (ready now, as EMR's ReadyDateTime says)."""
        from moto.core.utils import utcnow

        assert state in ("BOOTSTRAPPING", "WAITING", "RUNNING"), state
        cluster = self._moto_cluster(cluster_id)
        cluster.state = state
        if state != "BOOTSTRAPPING":
            cluster.ready_datetime = utcnow()

    def set_ready_time(self, cluster_id: str, at: datetime) -> None:
        """Say the cluster became ready (EMR's ReadyDateTime) at *at*: the bot's idle clock counts from there.

        The Slack tests use it to put an idle deadline seconds ahead of the real clock, in a bot process
        whose time cannot be moved (its state remembers the cluster from long ago).
        """
        self._moto_cluster(cluster_id).ready_datetime = at.astimezone(UTC).replace(tzinfo=None)

    def fail_start(self, cluster_id: str, reason: str) -> None:
        """The start failed: TERMINATED_WITH_ERRORS with EMR's state-change reason (e.g. a bootstrap failure)."""
        from moto.core.utils import utcnow

        cluster = self._moto_cluster(cluster_id)
        cluster.state, cluster.end_datetime = "TERMINATED_WITH_ERRORS", utcnow()
        cluster.last_state_change_reason = reason

    def backstop(self, cluster_id: str) -> int | None:
        """The cluster's AutoTerminationPolicy IdleTimeout in seconds (None: none), read in-process."""
        from demo.moto_emr_resources import idle_timeout

        return idle_timeout(self._moto_cluster(cluster_id))

    def wait_until(self, cluster_id: str, state: str, timeout: float = 30) -> None:
        """Wait (real time) until a played start reaches *state*."""
        deadline = time.monotonic() + timeout
        while self.cluster_state(cluster_id) != state:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{cluster_id} is {self.cluster_state(cluster_id)}, not {state}")
            time.sleep(0.05)

    def set_termination_protection(self, cluster_id: str, protected: bool) -> None:
        self._moto_cluster(cluster_id).set_termination_protection(protected)

    def resize(self, cluster_id: str, role: str, count: int, *, resizing: bool = False) -> None:
        """Resize the cluster's instance group of *role* (MASTER, CORE, TASK) to *count* instances, in-process.

        moto's ModifyInstanceGroups sets the count at once, and its groups are always RUNNING; here
        *resizing* leaves the group ``RESIZING`` (EMR still adding or removing instances) until a
        call without it. The cluster's own state does not change: a resize leaves it WAITING.
        """
        [group] = [g for g in self._moto_cluster(cluster_id).instance_groups if g.role == role]
        group.set_instance_count(count)
        group.state = "RESIZING" if resizing else "RUNNING"

    def set_cluster_state(self, cluster_id: str, state: str) -> None:
        """Move a cluster to RUNNING/WAITING as if a step started or ended (moto has no API for it)."""
        self._moto_cluster(cluster_id).state = state

    # -- IAM enforcement -------------------------------------------------
    def create_bot_user(self, policy: dict[str, Any] | None = None) -> dict[str, str]:
        """An IAM user in account A with the shipped AssumeRole policy; returns its keys."""
        from demo import policies

        iam = self.client("iam")
        iam.create_user(UserName="emr-chatops-bot")
        iam.put_user_policy(
            UserName="emr-chatops-bot",
            PolicyName="assume-cre",
            PolicyDocument=json.dumps(policy or policies.bot_policy(ROLE_ARN)),
        )
        key = iam.create_access_key(UserName="emr-chatops-bot")["AccessKey"]
        return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}

    def set_iam_enforcement(self, on: bool) -> None:
        """Switch moto's IAM authentication and authorisation on or off for every request."""
        self._post("/moto-api/reset-auth", b"0" if on else b"inf")

    def _post(self, path: str, data: bytes) -> None:
        url = self.url + path  # always our own http://127.0.0.1 server
        req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "text/plain"})  # noqa: S310
        with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310 - our own loopback URL
            response.read()
