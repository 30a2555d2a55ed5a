"""Cluster templates for ``!emr start`` (DESIGN §12): ``NAME.json`` files of RunJobFlow parameters.

A template is the keyword arguments of boto3's ``run_job_flow`` as a JSON
object, in a file ``TEMPLATES_DIR/NAME.json``; ``NAME`` is the word
``!emr start NAME`` takes. Templates are read and validated once, when the
plugin activates: a bad file stops activation with a message naming the file
and the problem (it is never skipped silently). Edits take effect at the next
activation (``!plugin reload EMR`` or a restart).

What a template must be:

* a JSON object whose keys are RunJobFlow parameters (:data:`RUN_JOB_FLOW_KEYS`;
  an unknown key is refused by name, with the closest known one);
* with ``Name``, ``ReleaseLabel``, ``Instances``, ``JobFlowRole`` and ``ServiceRole``;
* ``Instances.KeepJobFlowAliveWhenNoSteps`` not false (a cluster that ends after
  its steps is nothing to share; left out, the bot sends true), and
  ``Instances.TerminationProtected`` not true (the bot could not terminate it);
* without ``AutoTerminationPolicy`` (the bot sets it: ``BACKSTOP_MINUTES``) and
  without the tags the bot sets itself (``CLUSTER_TAG``, ``emr-chatops:…``).

Everything else (instance types, applications, subnets, configurations) is
AWS's to judge when the cluster is started: a validation error comes back in
one line with AWS's reason. Nothing here imports boto3 or errbot, and nothing
reads the clock; the list of parameters is checked against botocore's model
of RunJobFlow by the tests.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

# The top-level parameters of EMR RunJobFlow (botocore's service model, 2009-03-31; tests/test_start.py
# compares this list with the installed botocore, so an SDK upgrade that adds one is noticed).
RUN_JOB_FLOW_KEYS = frozenset(
    {
        "AdditionalInfo",
        "AmiVersion",
        "Applications",
        "AutoScalingRole",
        "AutoTerminationPolicy",
        "BootstrapActions",
        "Configurations",
        "CustomAmiId",
        "EbsRootVolumeIops",
        "EbsRootVolumeSize",
        "EbsRootVolumeThroughput",
        "ExtendedSupport",
        "Instances",
        "JobFlowRole",
        "KerberosAttributes",
        "LogEncryptionKmsKeyId",
        "LogUri",
        "ManagedScalingPolicy",
        "MonitoringConfiguration",
        "Name",
        "NewSupportedProducts",
        "OSReleaseLabel",
        "PlacementGroupConfigs",
        "ReleaseLabel",
        "RepoUpgradeOnBoot",
        "ScaleDownBehavior",
        "SecurityConfiguration",
        "ServiceRole",
        "SessionEnabled",
        "StepConcurrencyLevel",
        "StepExecutionRoleArn",
        "Steps",
        "SupportedProducts",
        "Tags",
        "VisibleToAllUsers",
    }
)
REQUIRED = ("Name", "ReleaseLabel", "Instances", "JobFlowRole", "ServiceRole")
SET_BY_THE_BOT = {"AutoTerminationPolicy": "the bot sets it from BACKSTOP_MINUTES (EMR's idle timeout, DESIGN §12)"}
TEMPLATE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
TAG_PREFIX = "emr-chatops:"  # the bot's own tags: emr-chatops:template, emr-chatops:started-by
TEMPLATE_TAG = TAG_PREFIX + "template"
STARTED_BY_TAG = TAG_PREFIX + "started-by"
NAME_LIMIT = 256  # EMR's limit on a cluster name
TAG_VALUE_UNSAFE_RE = re.compile(r"[^\w .:/=+@-]")  # EMR tag values: letters, digits, spaces and _ . : / = + - @
FILE_LIMIT = 256 * 1024  # a template is a page of JSON, not a data file


class TemplateError(ValueError):
    """A template file is not usable; ``str()`` says why (the caller names the file)."""


@dataclass(frozen=True)
class Template:
    """One validated template: the word that names it and the RunJobFlow parameters it holds."""

    name: str  # the file name without .json: `!emr start NAME`
    file: str  # the file name, for messages
    request: Mapping[str, Any] = field(compare=False, repr=False)  # read-only; see run_job_flow()

    @property
    def cluster_name(self) -> str:
        return str(self.request["Name"])

    @property
    def release(self) -> str:
        return str(self.request["ReleaseLabel"])

    @property
    def service_role(self) -> str:
        return str(self.request["ServiceRole"])

    @property
    def instance_role(self) -> str:
        """``JobFlowRole``: the EC2 instance profile (by EMR's convention named like the role it holds)."""
        return str(self.request["JobFlowRole"])

    def run_job_flow(self, tags: Mapping[str, str], idle_timeout: int | None) -> dict[str, Any]:
        """The RunJobFlow parameters to send: a fresh copy with the bot's tags, backstop and keep-alive.

        *tags* are the bot's (they come after the template's own); *idle_timeout* is the
        AutoTerminationPolicy in seconds, or None (BACKSTOP_MINUTES off).
        """
        request: dict[str, Any] = json.loads(json.dumps(dict(self.request)))  # a deep, plain copy
        request["Instances"].setdefault("KeepJobFlowAliveWhenNoSteps", True)
        own = [t for t in request.get("Tags", []) if t["Key"] not in tags]
        request["Tags"] = own + [{"Key": key, "Value": value} for key, value in tags.items()]
        if idle_timeout is not None:
            request["AutoTerminationPolicy"] = {"IdleTimeout": idle_timeout}
        return request


def start_tags(managed: tuple[str, str], template: str, user: str) -> dict[str, str]:
    """The tags the bot gives a cluster it starts (DESIGN §12): *managed* (the tag that makes it managed,
    and that the role's policy requires), the template's name, and the starter (their chat id, made a
    valid EMR tag value)."""
    started_by = TAG_VALUE_UNSAFE_RE.sub("_", user)[:256]
    return {managed[0]: managed[1], TEMPLATE_TAG: template, STARTED_BY_TAG: started_by}


def parse_template(name: str, text: str, *, reserved_tags: Iterable[str] = ()) -> Template:
    """Validate one template's JSON text; *name* is its file name without ``.json``.

    *reserved_tags* are tag keys only the bot may set (the key of ``CLUSTER_TAG``).
    Raises :class:`TemplateError` with the problem, in words an operator can act on.
    """
    if not TEMPLATE_NAME_RE.match(name):
        raise TemplateError(
            "the file name is the template's name in `!emr start NAME`: use 1-40 letters, digits, - and _ "
            "(starting with a letter or digit), then .json"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise TemplateError(f"not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    if not isinstance(data, dict):
        raise TemplateError(
            f"must be a JSON object of RunJobFlow parameters (boto3's run_job_flow arguments), not {_kind(data)}"
        )
    for key in sorted(data):
        if key in SET_BY_THE_BOT:
            raise TemplateError(f"{key} must not be in a template: {SET_BY_THE_BOT[key]}")
        if key not in RUN_JOB_FLOW_KEYS:
            close = difflib.get_close_matches(key, sorted(RUN_JOB_FLOW_KEYS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise TemplateError(f"unknown key {key!r}: not a parameter of RunJobFlow{hint}")
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise TemplateError(f"{missing[0]} is missing (a template needs {', '.join(REQUIRED)})")
    for key in ("Name", "ReleaseLabel", "JobFlowRole", "ServiceRole"):
        if not isinstance(data[key], str) or not data[key].strip():
            raise TemplateError(f"{key} must be a non-empty string, not {_kind(data[key])}")
    if len(data["Name"]) > NAME_LIMIT:
        raise TemplateError(f"Name is {len(data['Name'])} characters long; EMR allows {NAME_LIMIT}")
    instances = data["Instances"]
    if not isinstance(instances, dict):
        raise TemplateError(f"Instances must be a JSON object, not {_kind(instances)}")
    keep = instances.get("KeepJobFlowAliveWhenNoSteps", True)
    if keep is not True:
        raise TemplateError(
            f"Instances.KeepJobFlowAliveWhenNoSteps is {json.dumps(keep)}: the cluster would end after its steps "
            "(at once without any), leaving nothing to share; set it to true or leave it out"
        )
    if instances.get("TerminationProtected", False) is not False:
        raise TemplateError(
            "Instances.TerminationProtected is not false: the bot could not terminate the cluster "
            "(idle rule, end of day); leave it out"
        )
    _check_tags(data.get("Tags", []), frozenset(reserved_tags))
    return Template(name=name, file=f"{name}.json", request=MappingProxyType(data))


def _check_tags(tags: Any, reserved: frozenset[str]) -> None:
    if not isinstance(tags, list) or not all(isinstance(t, dict) and isinstance(t.get("Key"), str) for t in tags):
        raise TemplateError('Tags must be a list of {"Key": …, "Value": …} objects')
    for tag in tags:
        key = tag["Key"]
        if key.startswith(TAG_PREFIX) or key in reserved:
            raise TemplateError(f"the tag {key} is the bot's to set (CLUSTER_TAG and emr-chatops:…): remove it")
        if not isinstance(tag.get("Value", ""), str):
            raise TemplateError(f"the value of the tag {key} must be a string")


def load_templates(directory: str | Path, *, reserved_tags: Iterable[str] = ()) -> tuple[Template, ...]:
    """Every ``*.json`` template in *directory*, sorted by name; other files are ignored.

    Raises :class:`TemplateError` naming the directory or the file: a missing directory, no
    template in it, an unreadable or invalid file, two templates with one name (names are
    case-insensitive in commands) or naming their clusters alike (their clusters could not be
    told apart by name).
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise TemplateError(f"{folder}: no such directory")
    reserved = frozenset(reserved_tags)
    templates: list[Template] = []
    for path in sorted(folder.glob("*.json")):
        try:
            if path.stat().st_size > FILE_LIMIT:
                raise TemplateError(f"{path.stat().st_size} bytes; a template holds at most {FILE_LIMIT}")
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise TemplateError(f"{path}: cannot be read ({type(error).__name__})") from None
        except TemplateError as error:
            raise TemplateError(f"{path}: {error}") from None
        try:
            template = parse_template(path.stem, text, reserved_tags=reserved)
        except TemplateError as error:
            raise TemplateError(f"{path}: {error}") from None
        for other in templates:
            if other.name.casefold() == template.name.casefold():
                raise TemplateError(f"{path}: the template name clashes with {other.file} (names ignore case)")
            if other.cluster_name.casefold() == template.cluster_name.casefold():
                raise TemplateError(
                    f"{path}: its cluster Name {template.cluster_name!r} is also {other.file}'s: "
                    "clusters are named in commands, give each template its own"
                )
        templates.append(template)
    if not templates:
        raise TemplateError(f"{folder}: no NAME.json template in it")
    return tuple(templates)


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


__all__ = [
    "RUN_JOB_FLOW_KEYS",
    "STARTED_BY_TAG",
    "TEMPLATE_TAG",
    "Template",
    "TemplateError",
    "load_templates",
    "parse_template",
    "start_tags",
]
