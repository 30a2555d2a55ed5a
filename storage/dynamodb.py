"""Shared storage on DynamoDB for Errbot (``STORAGE = "DynamoDB"``), for two or more bot instances.

Why this exists
---------------
One bot process on one host is a single point of failure (DESIGN §18). Two instances can only
share their state if neither overwrites the other: Errbot's storage API is get/set/remove/keys,
and its ``mutable()`` writes back with no compare-and-set. So besides Errbot's API, this storage
offers what a port needs to never lose an update, to elect one poller, and to handle an event once:

* :meth:`DynamoDBStorage.get_versioned` / :meth:`DynamoDBStorage.set_versioned`: every value
  carries a revision (1, 2, 3 …; 0 means "absent"); a write that expects another revision than the
  stored one fails with :class:`Conflict` (a DynamoDB ``ConditionExpression``), and the caller
  re-reads and re-decides.
* :meth:`DynamoDBStorage.acquire_lease` (owner, expiry, fencing counter) and a *fenced* write:
  ``set_versioned(..., fence=lease, now=now)`` succeeds only while the lease item still names the
  same owner and fencing counter and has not expired (``TransactWriteItems`` with a
  ``ConditionCheck`` on the lease item), else :class:`LeaseLost`.
* :meth:`DynamoDBStorage.put_if_absent`: record an id once, until it expires (handled Slack
  envelope ids).

Errbot's own ``set`` writes last-writer-wins (that is its contract), but it bumps the revision
too (``if_not_exists(rev, 0) + 1`` in one ``UpdateItem``), so a compare-and-set racing a plain
``set`` still fails rather than overwrite it. Every read is strongly consistent: a command on one
instance sees what the other wrote.

Time is passed in (``now``, an aware datetime): no decision here reads a clock, so tests move
time, and expiry is compared by the bot itself — DynamoDB's TTL deletes late (moto's never).

The table
---------
One table, partition key ``pk`` (S) = the Errbot namespace (``core``, the plugin's name …), sort key
``sk`` (S) = a kind prefix and the key: ``v#<key>`` a value, ``lease#<name>`` a lease,
``once#<id>`` a recorded id. The prefix keeps Errbot's ``keys()`` a single ``Query`` on
``begins_with(sk, "v#")`` and lets an empty Errbot key be stored (a key attribute may not be
empty). Value items: ``v`` (S, JSON text) or ``z`` (B, the JSON zlib-compressed when larger than
:data:`COMPRESS_ABOVE`), ``rev`` (N), ``w`` (S, a random token of the write; see below). Lease
items: ``owner``, ``expiry`` (N, epoch seconds), ``fencing`` (N); they never carry a TTL (a
deleted lease would restart its fencing counter). Once items: ``exp`` (N, exact) and ``ttl`` (N,
whole seconds: the table's TTL attribute, so DynamoDB clears them eventually).
``deploy/cloudformation/dynamodb.yaml`` creates it; with ``create`` (demo, tests) this plugin does.

Values: JSON, not pickle
------------------------
The plugin's state is plain data (DESIGN §7). Values are stored as JSON with a few tagged types
(tuple, set, frozenset, bytes, datetime, date, timedelta, Decimal, dicts whose keys are not all
strings, and the Text backend's ``TextPerson``, which errbot's TextCmds stores), so whatever Errbot and
the plugin store round-trips exactly; any other type is refused
with ``TypeError`` at ``set`` (never silently changed). Not pickle, because unpickling runs code:
on SQLite the pickles sit in the bot's own 0600 file, but a DynamoDB table is writable by every
identity IAM lets in (other instances, operators, restore tools), and a JSON item can be read in
the console, in a point-in-time restore or by a script.

Sizes: an item is at most 400 KB. A value whose item would exceed :data:`ITEM_LIMIT` even
compressed is refused with :class:`ValueTooLarge` (a ``ValueError``) and the stored value is left
as it was. A key is at most :data:`KEY_LIMIT` bytes of UTF-8 (the sort key's 1024, less the
prefix); a longer one is refused with ``ValueError``.

Retries
-------
botocore retries a request whose answer was lost. A retried conditional write would then fail
against its own first attempt, so every write carries a random token ``w`` and asks for the old
item on a failed condition (``ReturnValuesOnConditionCheckFailure``): finding its own token, the
write knows it succeeded. ``TransactWriteItems`` is idempotent by its client request token.

Bot config::

    BOT_EXTRA_STORAGE_PLUGINS_DIR = "/path/to/emr-chatops/storage"
    STORAGE = "DynamoDB"
    STORAGE_CONFIG = {"table": "emr-chatops", "region": "ap-northeast-1",
                      "endpoint_url": None, "create": False}

``config.py`` fills it from ``EMR_CHATOPS_STORAGE=dynamodb`` and ``EMR_CHATOPS_DYNAMODB_*``.
The credentials are the bot's own identity (account A), from boto3's usual chain; the actions
this module calls are :data:`PERMISSIONS` (``deploy/iam/account-a-dynamodb.json``).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import secrets
import zlib
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, NamedTuple

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

# errbot ships no type information: under ``mypy --ignore-missing-imports`` these are ``Any``.
from errbot.storage import StoreNotOpenError
from errbot.storage.base import StorageBase, StoragePluginBase

log = logging.getLogger("errbot.storage.dynamodb")

DEFAULT_TABLE: Final = "emr-chatops"
#: Where the table is defined, named when it is missing.
TEMPLATE: Final = "deploy/cloudformation/dynamodb.yaml"

#: The API operations this module calls, and the IAM actions each needs. ``TransactWriteItems``
#: is not an IAM action: IAM checks each item of the transaction (an Update and a ConditionCheck).
OPERATIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "DescribeTable": ("dynamodb:DescribeTable",),  # at start: the table exists, with this key schema
    "GetItem": ("dynamodb:GetItem",),
    "Query": ("dynamodb:Query",),  # keys() and len()
    "UpdateItem": ("dynamodb:UpdateItem",),  # set, set_versioned, acquire_lease, release_lease
    "DeleteItem": ("dynamodb:DeleteItem",),  # remove
    "PutItem": ("dynamodb:PutItem",),  # put_if_absent
    "TransactWriteItems": ("dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"),  # a fenced set_versioned
}
#: What the shipped policy allows on the table, and nothing else.
PERMISSIONS: Final = tuple(sorted({action for actions in OPERATIONS.values() for action in actions}))
#: Only with ``create`` (demo, tests): never in the shipped policy, where CloudFormation makes the table.
CREATE_OPERATIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "CreateTable": ("dynamodb:CreateTable",),
    "UpdateTimeToLive": ("dynamodb:UpdateTimeToLive",),
}

PK: Final = "pk"
SK: Final = "sk"
TTL_ATTRIBUTE: Final = "ttl"
VALUE_PREFIX: Final = "v#"
LEASE_PREFIX: Final = "lease#"
ONCE_PREFIX: Final = "once#"

#: DynamoDB's item limit is 400 KB (409,600 bytes, attribute names included); this leaves room.
ITEM_LIMIT: Final = 400_000
#: JSON longer than this (bytes) is stored zlib-compressed (attribute ``z``) instead of as text (``v``).
COMPRESS_ABOVE: Final = 8 * 1024
#: A sort key is at most 1024 bytes; the longest prefix is the lease's.
SORT_KEY_LIMIT: Final = 1024
KEY_LIMIT: Final = SORT_KEY_LIMIT - len(LEASE_PREFIX)
PARTITION_KEY_LIMIT: Final = 2048

_CLIENT_CONFIG: Final = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=5,
    read_timeout=10,
)


# --------------------------------------------------------------------------- the API's types


class Conflict(Exception):
    """The stored revision is not the one the write expected: re-read, re-decide, write again."""

    def __init__(self, key: str, expected: int, actual: int | None) -> None:
        found = "unknown" if actual is None else str(actual)
        super().__init__(f"storage key {key!r}: expected revision {expected}, found {found}")
        self.key, self.expected, self.actual = key, expected, actual


class LeaseLost(Exception):
    """A fenced write refused: the lease moved on (another owner, a new fencing counter) or expired.

    Not a :class:`Conflict`: re-reading does not help; the writer is no longer the one that acts.
    """


class ValueTooLarge(ValueError):
    """The item would exceed DynamoDB's 400 KB even compressed; the stored value is unchanged."""


class TableMissing(RuntimeError):
    """The table does not exist and ``create`` is off."""


class Versioned(NamedTuple):
    value: Any
    revision: int  # >= 1 for a stored value


class Lease(NamedTuple):
    """A lease as stored: acquired by ``owner`` iff the returned lease names that owner."""

    name: str
    owner: str
    expiry: datetime  # aware, UTC
    fencing: int  # +1 on every change of owner


# --------------------------------------------------------------------------- values: tagged JSON

_TAG: Final = "$"


def _to_json(value: Any) -> Any:
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is list:
        return [_to_json(item) for item in value]
    if kind is dict:
        keys = list(value)
        if all(type(k) is str for k in keys) and not (len(keys) == 1 and keys[0].startswith(_TAG)):
            return {k: _to_json(v) for k, v in value.items()}
        return {"$dict": [[_to_json(k), _to_json(v)] for k, v in value.items()]}
    if kind is tuple:
        return {"$tuple": [_to_json(item) for item in value]}
    if kind is set:
        return {"$set": [_to_json(item) for item in value]}
    if kind is frozenset:
        return {"$frozenset": [_to_json(item) for item in value]}
    if kind is bytes:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if kind is datetime:
        return {"$datetime": value.isoformat()}
    if kind is date:
        return {"$date": value.isoformat()}
    if kind is timedelta:
        return {"$timedelta": [value.days, value.seconds, value.microseconds]}
    if kind is Decimal:
        return {"$decimal": str(value)}
    if (kind.__module__, kind.__qualname__) == ("errbot.backends.text", "TextPerson"):
        # errbot's TextCmds keeps the console's current user (the demo, on the Text backend): rebuilt from
        # its four strings, never by unpickling.
        return {"$TextPerson": [value.person, value.client, value.nick, value.fullname]}
    raise TypeError(
        f"DynamoDB storage keeps plain data only: cannot store a {kind.__module__}.{kind.__qualname__} "
        "(str, int, float, bool, None, list, dict, tuple, set, frozenset, bytes, datetime, date, "
        "timedelta, Decimal)"
    )


def _tagged(obj: dict[str, Any]) -> Any:
    if len(obj) != 1:
        return obj
    ((tag, payload),) = obj.items()
    if not tag.startswith(_TAG):
        return obj
    if tag == "$dict":
        return {k: v for k, v in payload}
    if tag == "$tuple":
        return tuple(payload)
    if tag == "$set":
        return set(payload)
    if tag == "$frozenset":
        return frozenset(payload)
    if tag == "$bytes":
        return base64.b64decode(payload)
    if tag == "$datetime":
        return datetime.fromisoformat(payload)
    if tag == "$date":
        return date.fromisoformat(payload)
    if tag == "$timedelta":
        return timedelta(days=payload[0], seconds=payload[1], microseconds=payload[2])
    if tag == "$decimal":
        return Decimal(payload)
    if tag == "$TextPerson":
        from errbot.backends.text import TextPerson

        return TextPerson(*payload)
    raise ValueError(f"unknown tag {tag!r} in a stored value")


def encode_value(value: Any) -> str:
    """*value* as JSON text (see the module's doc); ``TypeError`` for a type it does not keep."""
    return json.dumps(_to_json(value), ensure_ascii=False, separators=(",", ":"))


def decode_value(text: str) -> Any:
    return json.loads(text, object_hook=_tagged)


def _value_attributes(value: Any) -> tuple[str, dict[str, Any], str]:
    """(the attribute used, its DynamoDB value, the attribute to remove) for *value*."""
    text = encode_value(value)
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: not UTF-8, so escape it
        text = json.dumps(_to_json(value), ensure_ascii=True, separators=(",", ":"))
        raw = text.encode("utf-8")
    if len(raw) <= COMPRESS_ABOVE:
        return "v", {"S": text}, "z"
    return "z", {"B": zlib.compress(raw, 6)}, "v"


def _attribute_size(attribute: Mapping[str, Any]) -> int:
    ((kind, value),) = attribute.items()
    if kind == "S":
        return len(value.encode("utf-8"))
    if kind == "B":
        return len(value)
    return len(str(value)) // 2 + 2  # N: DynamoDB's own estimate is about this


def _item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    return sum(len(name.encode("utf-8")) + _attribute_size(value) for name, value in item.items())


def _decode_item(item: Mapping[str, Any]) -> Any:
    if "z" in item:
        return decode_value(zlib.decompress(item["z"]["B"]).decode("utf-8"))
    return decode_value(item["v"]["S"])


# --------------------------------------------------------------------------- helpers


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"storage keys must be str, not {type(key).__name__}")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise ValueError(f"storage key {key[:60]!r}… is not valid UTF-8 (DynamoDB keys must be)") from error
    if size > KEY_LIMIT:
        raise ValueError(f"storage key {key[:60]!r}… is {size} bytes of UTF-8: DynamoDB allows {KEY_LIMIT} here")
    return key


def _epoch(now: datetime) -> float:
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be an aware datetime, not {now!r}")
    return now.timestamp()


def _number(value: float) -> dict[str, str]:
    return {"N": repr(float(value)) if not float(value).is_integer() else str(int(value))}


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _lease_of(name: str, item: Mapping[str, Any]) -> Lease:
    return Lease(
        name=name,
        owner=item["owner"]["S"],
        expiry=datetime.fromtimestamp(float(item["expiry"]["N"]), UTC),
        fencing=int(item["fencing"]["N"]),
    )


# --------------------------------------------------------------------------- one namespace


class DynamoDBStorage(StorageBase):  # type: ignore[misc]  # errbot is untyped: StorageBase is Any
    """One Errbot namespace (one partition) of the shared table.

    Thread-safe (a boto3 client is). No ``__len__``: Errbot tests the store for truthiness.
    """

    #: Other processes (the other instances) write this table too: readers must not cache what they read.
    SHARED = True

    Conflict = Conflict
    LeaseLost = LeaseLost

    def __init__(self, client: Any, table: str, namespace: str) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise ValueError(f"invalid storage namespace {namespace!r}")
        if len(namespace.encode("utf-8")) > PARTITION_KEY_LIMIT:
            raise ValueError(f"storage namespace {namespace[:60]!r}… is longer than {PARTITION_KEY_LIMIT} bytes")
        self._client: Any = client
        self.table = table
        self.namespace = namespace
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.table}/{self.namespace} {state}>"

    # -- plumbing ---------------------------------------------------------------------------

    def _api(self) -> Any:
        if self._closed:
            raise StoreNotOpenError(f"DynamoDB storage {self.table}/{self.namespace} is closed")
        return self._client

    def _key(self, prefix: str, key: str) -> dict[str, dict[str, str]]:
        return {PK: {"S": self.namespace}, SK: {"S": prefix + key}}

    def _get_item(self, prefix: str, key: str) -> dict[str, Any] | None:
        answer = self._api().get_item(TableName=self.table, Key=self._key(prefix, key), ConsistentRead=True)
        item: dict[str, Any] | None = answer.get("Item")
        return item

    def _value_update(self, key: str, value: Any, revision: str) -> tuple[dict[str, Any], str]:
        """The UpdateItem arguments that write *value* with the revision expression *revision*; and the token."""
        used, encoded, other = _value_attributes(value)
        token = secrets.token_hex(8)
        size = _item_size({**self._key(VALUE_PREFIX, key), used: encoded, "rev": {"N": "9" * 12}, "w": {"S": token}})
        if size > ITEM_LIMIT:
            raise ValueTooLarge(
                f"storage key {key[:60]!r}: the value is {size} bytes stored (compressed), more than a DynamoDB "
                f"item may hold ({ITEM_LIMIT}); nothing was written"
            )
        arguments = {
            "TableName": self.table,
            "Key": self._key(VALUE_PREFIX, key),
            "UpdateExpression": f"SET #val = :val, #rev = {revision}, #w = :w REMOVE #other",
            "ExpressionAttributeNames": {"#val": used, "#other": other, "#rev": "rev", "#w": "w"},
            "ExpressionAttributeValues": {":val": encoded, ":w": {"S": token}},
        }
        return arguments, token

    # -- Errbot's storage API ---------------------------------------------------------------

    def get(self, key: str) -> Any:
        """The value stored for *key* (a strongly consistent read); ``KeyError`` if there is none."""
        item = self._get_item(VALUE_PREFIX, _check_key(key))
        if item is None:
            raise KeyError(key)
        return _decode_item(item)

    def set(self, key: str, value: Any) -> None:
        """Store *value* (last writer wins, Errbot's contract); the revision goes up by one."""
        arguments, _ = self._value_update(_check_key(key), value, "if_not_exists(#rev, :zero) + :one")
        arguments["ExpressionAttributeValues"].update({":zero": {"N": "0"}, ":one": {"N": "1"}})
        self._api().update_item(**arguments)

    def remove(self, key: str) -> None:
        """Delete *key*; ``KeyError`` if there is none. Its revision starts again from 0."""
        try:
            self._api().delete_item(
                TableName=self.table,
                Key=self._key(VALUE_PREFIX, _check_key(key)),
                ConditionExpression="attribute_exists(#pk)",
                ExpressionAttributeNames={"#pk": PK},
            )
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                raise KeyError(key) from None
            raise

    def _query(self, **extra: Any) -> Any:
        arguments = {
            "TableName": self.table,
            "KeyConditionExpression": "#pk = :ns AND begins_with(#sk, :prefix)",
            "ExpressionAttributeNames": {"#pk": PK, "#sk": SK},
            "ExpressionAttributeValues": {":ns": {"S": self.namespace}, ":prefix": {"S": VALUE_PREFIX}},
            "ConsistentRead": True,
            **extra,
        }
        while True:
            page = self._api().query(**arguments)
            yield page
            if "LastEvaluatedKey" not in page:
                return
            arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def len(self) -> int:
        """Number of keys (one ``Query`` counting them, per 1 MB page)."""
        return sum(int(page["Count"]) for page in self._query(Select="COUNT"))

    def keys(self) -> list[str]:
        """A snapshot list of the keys, sorted."""
        return sorted(
            item[SK]["S"][len(VALUE_PREFIX) :]
            for page in self._query(ProjectionExpression="#sk")
            for item in page.get("Items", [])
        )

    def close(self) -> None:
        """Nothing to flush (every write is acknowledged by DynamoDB before it returns). Idempotent."""
        self._closed = True

    # -- compare-and-set --------------------------------------------------------------------

    def get_versioned(self, key: str) -> Versioned:
        """(value, revision) of *key*, strongly consistent; ``KeyError`` if there is none."""
        item = self._get_item(VALUE_PREFIX, _check_key(key))
        if item is None:
            raise KeyError(key)
        return Versioned(_decode_item(item), int(item["rev"]["N"]))

    def set_versioned(
        self, key: str, value: Any, expected_revision: int, *, fence: Lease | None = None, now: datetime | None = None
    ) -> int:
        """Write *value* if the stored revision is *expected_revision* (0: the key must be absent).

        Returns the new revision (``expected_revision + 1``). :class:`Conflict` if the stored
        revision is another one (nothing written). With *fence* (a :class:`Lease` from
        :meth:`acquire_lease`) and *now*, the write also requires that the lease item still names
        ``fence.owner`` and ``fence.fencing`` and has not expired at *now*, in one transaction;
        else :class:`LeaseLost` (nothing written).
        """
        _check_key(key)
        if type(expected_revision) is not int or expected_revision < 0:
            raise ValueError(f"expected_revision must be an int >= 0, not {expected_revision!r}")
        new = expected_revision + 1
        arguments, token = self._value_update(key, value, ":new")
        arguments["ExpressionAttributeValues"][":new"] = {"N": str(new)}
        if expected_revision == 0:
            arguments["ConditionExpression"] = "attribute_not_exists(#pk)"
            arguments["ExpressionAttributeNames"]["#pk"] = PK
        else:
            arguments["ConditionExpression"] = "#rev = :expected"
            arguments["ExpressionAttributeValues"][":expected"] = {"N": str(expected_revision)}
        if fence is not None:
            if now is None:
                raise ValueError("a fenced write needs now")
            self._fenced_update(arguments, key, expected_revision, fence, _epoch(now))
            return new
        try:
            self._api().update_item(**arguments, ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            old = error.response.get("Item") or {}
            if old.get("w", {}).get("S") == token and int(old["rev"]["N"]) == new:
                return new  # our own first attempt, whose answer was lost and retried
            raise Conflict(key, expected_revision, int(old["rev"]["N"]) if "rev" in old else 0) from None
        return new

    def _fenced_update(
        self, arguments: dict[str, Any], key: str, expected_revision: int, fence: Lease, now: float
    ) -> None:
        update = {**arguments, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        check = {
            "TableName": self.table,
            "Key": self._key(LEASE_PREFIX, _check_key(fence.name)),
            "ConditionExpression": "#owner = :owner AND #fencing = :fencing AND #expiry > :now",
            "ExpressionAttributeNames": {"#owner": "owner", "#fencing": "fencing", "#expiry": "expiry"},
            "ExpressionAttributeValues": {
                ":owner": {"S": fence.owner},
                ":fencing": {"N": str(int(fence.fencing))},
                ":now": _number(now),
            },
        }
        try:
            self._api().transact_write_items(TransactItems=[{"ConditionCheck": check}, {"Update": update}])
        except ClientError as error:
            if _code(error) != "TransactionCanceledException":
                raise
            reasons = error.response.get("CancellationReasons") or [{}, {}]
            if reasons[0].get("Code") == "ConditionalCheckFailed":
                raise LeaseLost(
                    f"lease {fence.name!r} moved on from {fence.owner!r} (fencing {fence.fencing}) or expired"
                ) from None
            if reasons[1].get("Code") == "ConditionalCheckFailed":
                old = reasons[1].get("Item") or {}
                raise Conflict(key, expected_revision, int(old["rev"]["N"]) if "rev" in old else None) from None
            raise

    # -- once -------------------------------------------------------------------------------

    def put_if_absent(self, key: str, value: Any, ttl_seconds: float, now: datetime) -> bool:
        """Record *key* (with *value*) for *ttl_seconds* from *now*: True if it was not recorded or had
        expired at *now* (compared here, not by DynamoDB's TTL), False if it is recorded and live."""
        _check_key(key)
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be > 0, not {ttl_seconds!r}")
        at = _epoch(now)
        expires = at + ttl_seconds
        used, encoded, _ = _value_attributes(value)
        token = secrets.token_hex(8)
        item = {
            **self._key(ONCE_PREFIX, key),
            used: encoded,
            "exp": _number(expires),
            TTL_ATTRIBUTE: {"N": str(math.ceil(expires))},
            "w": {"S": token},
        }
        if _item_size(item) > ITEM_LIMIT:
            raise ValueTooLarge(f"put_if_absent {key[:60]!r}: the value is larger than a DynamoDB item may hold")
        try:
            self._api().put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(#pk) OR #exp <= :now",
                ExpressionAttributeNames={"#pk": PK, "#exp": "exp"},
                ExpressionAttributeValues={":now": _number(at)},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            old = error.response.get("Item") or {}
            return bool(old.get("w", {}).get("S") == token)  # True: our own first attempt, retried
        return True

    # -- leases -----------------------------------------------------------------------------

    def acquire_lease(self, name: str, owner: str, seconds: float, now: datetime) -> Lease:
        """Take or renew lease *name* for *owner* until *now* + *seconds*.

        Succeeds when the lease is free, expired at *now*, or already *owner*'s (a renewal keeps
        the fencing counter); a change of owner adds 1 to it. Returns the lease as stored after
        the attempt: acquired iff ``lease.owner == owner``; otherwise it is the live holder's.
        *owner* must be unique per process (host, pid and a random part). One request to renew.
        """
        _check_key(name)
        if not isinstance(owner, str) or not owner:
            raise ValueError("a lease owner is a non-empty string")
        if seconds <= 0:
            raise ValueError(f"seconds must be > 0, not {seconds!r}")
        at = _epoch(now)
        key = self._key(LEASE_PREFIX, name)
        names = {"#owner": "owner", "#expiry": "expiry", "#fencing": "fencing"}
        try:  # renew our own
            answer = self._api().update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET #expiry = :expiry",
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner", "#expiry": "expiry"},
                ExpressionAttributeValues={":owner": {"S": owner}, ":expiry": _number(at + seconds)},
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return _lease_of(name, answer["Attributes"])
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            old = error.response.get("Item")
        if old and float(old["expiry"]["N"]) > at:
            return _lease_of(name, old)  # another owner's, live
        try:  # take it over: free, or expired
            answer = self._api().update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET #owner = :owner, #expiry = :expiry ADD #fencing :one",
                ConditionExpression="attribute_not_exists(#owner) OR #expiry <= :now",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":expiry": _number(at + seconds),
                    ":one": {"N": "1"},
                    ":now": _number(at),
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            # Someone else took it first, or our own first attempt was retried: either way, as stored.
            return _lease_of(name, error.response["Item"])
        lease = _lease_of(name, answer["Attributes"])
        log.info("Lease %s/%s taken by %s (fencing %d)", self.namespace, name, owner, lease.fencing)
        return lease

    def release_lease(self, name: str, owner: str, now: datetime) -> None:
        """End *owner*'s lease at *now* (a clean stop: another instance takes over at its next try).

        Nothing happens if *owner* does not hold it. The fencing counter stays.
        """
        _check_key(name)
        at = _epoch(now)
        try:
            self._api().update_item(
                TableName=self.table,
                Key=self._key(LEASE_PREFIX, name),
                UpdateExpression="SET #expiry = :now",
                ConditionExpression="#owner = :owner AND #expiry > :now",
                ExpressionAttributeNames={"#owner": "owner", "#expiry": "expiry"},
                ExpressionAttributeValues={":owner": {"S": owner}, ":now": _number(at)},
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise

    def read_lease(self, name: str) -> Lease | None:
        """The lease as stored (possibly expired), or None if it was never taken."""
        item = self._get_item(LEASE_PREFIX, _check_key(name))
        return None if item is None else _lease_of(name, item)


# --------------------------------------------------------------------------- the plugin


def _flag(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"STORAGE_CONFIG {name!r} must be true or false, not {value!r}")


class DynamoDBStoragePlugin(StoragePluginBase):  # type: ignore[misc]  # errbot is untyped: base is Any
    """Errbot storage plugin (``.plug`` Name ``DynamoDB``): a factory of :class:`DynamoDBStorage`.

    ``STORAGE_CONFIG`` keys: ``table`` (default ``emr-chatops``), ``region`` (default: boto3's),
    ``endpoint_url`` (local emulators), ``create`` (create a missing table: demo and tests). The
    table is checked here, at start: missing (without ``create``) or with another key schema, the
    bot does not start.
    """

    def __init__(self, bot_config: Any) -> None:
        super().__init__(bot_config)
        config: Mapping[str, Any] = self._storage_config or {}
        self.table = str(config.get("table") or DEFAULT_TABLE)
        self.create = _flag(config.get("create", False), "create")
        session = boto3.session.Session()  # its own session: boto3's default one is not thread-safe
        self.client: Any = session.client(
            "dynamodb",
            region_name=config.get("region") or None,
            endpoint_url=config.get("endpoint_url") or None,
            config=_CLIENT_CONFIG,
        )
        self._check_table()

    def _check_table(self) -> None:
        where = f"DynamoDB table {self.table!r} in {self.client.meta.region_name}"
        try:
            table = self.client.describe_table(TableName=self.table)["Table"]
        except ClientError as error:
            if _code(error) != "ResourceNotFoundException":
                raise RuntimeError(f"{where}: cannot read it: {_code(error) or error}") from error
            if not self.create:
                raise TableMissing(
                    f"{where} does not exist: deploy {TEMPLATE} (CloudFormation), or set "
                    "EMR_CHATOPS_DYNAMODB_CREATE=true to create it (demo and tests)"
                ) from None
            table = self._create_table()
        schema = {(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]}
        types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
        if schema != {(PK, "HASH"), (SK, "RANGE")} or types.get(PK) != "S" or types.get(SK) != "S":
            raise RuntimeError(f"{where} is not this bot's: its key must be {PK} (S, HASH) and {SK} (S, RANGE)")
        log.info("DynamoDB storage on %s", where)

    def _create_table(self) -> Any:
        try:
            self.client.create_table(
                TableName=self.table,
                AttributeDefinitions=[
                    {"AttributeName": PK, "AttributeType": "S"},
                    {"AttributeName": SK, "AttributeType": "S"},
                ],
                KeySchema=[{"AttributeName": PK, "KeyType": "HASH"}, {"AttributeName": SK, "KeyType": "RANGE"}],
                BillingMode="PAY_PER_REQUEST",
            )
            log.warning("Created DynamoDB table %s (EMR_CHATOPS_DYNAMODB_CREATE)", self.table)
        except ClientError as error:
            if _code(error) != "ResourceInUseException":  # another instance created it meanwhile
                raise
        self.client.get_waiter("table_exists").wait(TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        try:
            self.client.update_time_to_live(
                TableName=self.table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
            )
        except ClientError as error:
            if _code(error) != "ValidationException":  # already enabled, by the other instance
                raise
        return self.client.describe_table(TableName=self.table)["Table"]

    def open(self, namespace: str) -> DynamoDBStorage:
        """The storage of *namespace* (nothing to open: the table was checked at start)."""
        return DynamoDBStorage(self.client, self.table, namespace)
