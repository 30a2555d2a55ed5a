"""Prices from AWS's Price List (DESIGN §19): read, per instance type and region, never computed.

The Price List Query API (``pricing:GetProducts``, with the bot's own identity in
account A) answers from a few endpoints (:data:`emrchatops.domain.costs.PRICE_LIST_ENDPOINTS`),
each with the prices of every region. Two service codes give the two halves of an
instance-hour on EMR:

* ``AmazonEC2``: the on-demand price, for Linux, shared tenancy, no pre-installed
  software, used capacity (:data:`EC2_TERMS`), in the region (``regionCode``), of the
  instance type (``instanceType``);
* ``ElasticMapReduce``: EMR's own fee, product family ``Elastic Map Reduce Instance``,
  ``softwareType`` ``EMR`` (:data:`EMR_TERMS`), per instance type and region. AWS
  prices it on its own, with no fixed ratio to EC2 (m4.xlarge in us-east-1: EC2
  $0.20, EMR $0.06).

A region with a few types wanted is asked type by type; more, and the region's
products are paged through once per service code. Every page (``NextToken``)
is read; a throttled request is retried with a doubling pause, then given up in
one line (:class:`PriceListError`). A type without a price (or with several) is
left out and said (:class:`emrchatops.domain.costs.Missing`), never filled in.

Command line (with ``plugins/emr`` on ``sys.path``; ``make prices``)::

    python -m emrchatops.aws.prices --out prices.json [--region R …] [--type T …]
                                    [--like TABLE] [--endpoint us-east-1]

writes a ``PRICES_FILE`` (the format of ``prices.json``, each entry marked ``read``
with the day) of the regions and types given, by default those of *TABLE* (by
default the shipped table). The bot reads the same way, once a day, when
``PRICES=api`` (:class:`ApiPrices`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from emrchatops.aws.crossaccount import (
    ACCESS_DENIED_CODES,
    THROTTLING_CODES,
    botocore_session,
    error_code,
    translate_client_error,
    translate_transport_error,
)
from emrchatops.domain.costs import (
    INSTANCE_TYPE_RE,
    PRICE_LIST_ENDPOINTS,
    Missing,
    Price,
    PriceError,
    PricesRead,
    price_table,
    read_prices,
    table_data,
)
from emrchatops.domain.errors import AwsError, CredentialsError, EmrChatopsError, one_line
from emrchatops.domain.vocabulary import REGION_RE

log = logging.getLogger("errbot.plugins.emr.prices")

ACTION = "pricing:GetProducts"
PERMISSIONS = (ACTION,)  # what the bot's own identity (account A) needs: deploy/iam/account-a-assume.json
EC2 = "AmazonEC2"
EMR = "ElasticMapReduce"
EC2_TERMS = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used"}
EMR_TERMS = {"productFamily": "Elastic Map Reduce Instance", "softwareType": "EMR"}
PAGE_SIZE = 100  # GetProducts' largest page
BY_TYPE = 4  # a region with at most this many types wanted is asked type by type
HOURLY_UNITS = ("Hrs", "Hours")
SOURCE = (
    "AWS Price List Query API (pricing:GetProducts, endpoint {endpoint}): AmazonEC2 on-demand (Linux, shared "
    "tenancy, no pre-installed software, used capacity) and ElasticMapReduce (the EMR fee), per instance type "
    "and region"
)
# The command waits for a throttled Price List (1+2+4+8 s); the bot's poller does not wait long (0.5+1 s).
COMMAND_ATTEMPTS, COMMAND_FIRST_PAUSE = 5, 1.0
BOT_ATTEMPTS, BOT_FIRST_PAUSE = 3, 0.5
CONNECT_TIMEOUT, READ_TIMEOUT = 3.0, 20.0  # a page of 100 products is a few hundred kB


class PriceListError(AwsError):
    """The Price List could not be read (throttled, refused, unreachable, or an answer not understood)."""

    code = "PriceList"


class PriceListDeniedError(PriceListError):
    """IAM refused ``pricing:GetProducts`` to the bot's own identity."""

    code = "AccessDenied"

    def __init__(self, endpoint: str) -> None:
        self.action = ACTION
        super().__init__(
            f"AWS denied {ACTION} to the bot's own identity (account A, Price List endpoint {endpoint}): allow it "
            "in the bot's own policy (deploy/iam/account-a-assume.json, or the deploy/cloudformation/account-a.yaml "
            "stack), then try again."
        )


def pricing_client(endpoint: str) -> Any:
    """A Price List client with the bot's own identity (the default credential chain: account A)."""
    config = Config(
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={"mode": "standard", "total_max_attempts": 1},  # throttling is retried here, visibly
    )
    return boto3.Session(botocore_session=botocore_session()).client("pricing", region_name=endpoint, config=config)


def filters(terms: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in terms.items()]


class PriceList:
    """Reads prices from the Price List Query API through *client* (a boto3 ``pricing`` client)."""

    def __init__(
        self,
        client: Any,
        endpoint: str,
        *,
        attempts: int = COMMAND_ATTEMPTS,
        first_pause: float = COMMAND_FIRST_PAUSE,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.endpoint = endpoint
        self.attempts = attempts
        self.first_pause = first_pause
        self.sleep = sleep
        self.requests = 0  # GetProducts calls made (retries included)

    @property
    def source(self) -> str:
        return SOURCE.format(endpoint=self.endpoint)

    def read(self, wanted: Mapping[str, Iterable[str]], day: date) -> PricesRead:
        """The EC2 and EMR prices of *wanted* (region -> instance types), each marked read on *day*.

        Raises :class:`PriceListError` (one line) when the Price List cannot be read; a type
        it has no price for is in :attr:`PricesRead.missing`, not in the prices.
        """
        prices: dict[str, dict[str, Price]] = {}
        missing: list[Missing] = []
        for region, types in wanted.items():
            types = sorted(set(types))
            ec2 = self._region(EC2, EC2_TERMS, region, types)
            emr = self._region(EMR, EMR_TERMS, region, types)
            prices[region] = {}
            for instance_type in types:
                found = {"EC2": ec2.get(instance_type, set()), "EMR": emr.get(instance_type, set())}
                problems = [_problem(what, values) for what, values in found.items() if len(values) != 1]
                if problems:
                    missing.append(Missing(instance_type, region, " and ".join(problems)))
                    continue
                [ec2_price], [emr_price] = found["EC2"], found["EMR"]
                prices[region][instance_type] = Price(ec2_price, emr_price, read=day)
        return PricesRead(day, self.source, prices, tuple(missing))

    def _region(
        self, service: str, terms: Mapping[str, str], region: str, types: Sequence[str]
    ) -> dict[str, set[float]]:
        """instance type -> the distinct on-demand prices of the matching products of *service* in *region*."""
        asks = [{**terms, "regionCode": region, "instanceType": t} for t in types] if len(types) <= BY_TYPE else []
        asks = asks or [{**terms, "regionCode": region}]
        wanted = set(types)
        found: dict[str, set[float]] = {}
        for ask in asks:
            for product in self._products(service, ask):
                attributes = product.get("product", {}).get("attributes", {})
                instance_type = attributes.get("instanceType")
                if instance_type not in wanted or not _matches(product, {**terms, "regionCode": region}):
                    continue
                price = on_demand_usd(product)
                if price is not None:
                    found.setdefault(instance_type, set()).add(price)
        return found

    def _products(self, service: str, terms: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        """Every product of every page that *terms* select (GetProducts' ``NextToken``)."""
        params: dict[str, Any] = {
            "ServiceCode": service,
            "Filters": filters(terms),
            "FormatVersion": "aws_v1",
            "MaxResults": PAGE_SIZE,
        }
        while True:
            page = self._call(params)
            for item in page.get("PriceList", []):
                try:
                    product = json.loads(item) if isinstance(item, str) else item
                except ValueError:
                    raise PriceListError(
                        f"AWS's Price List (endpoint {self.endpoint}) answered {ACTION} with a product that is not "
                        "JSON; try again later."
                    ) from None
                if isinstance(product, dict):
                    yield product
            token = page.get("NextToken")
            if not token:
                return
            params = {**params, "NextToken": token}

    def _call(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """One GetProducts request; a throttled one again after 1, 2, 4 … s, then a clear line."""
        pause = self.first_pause
        waited = 0.0
        for attempt in range(1, self.attempts + 1):
            self.requests += 1
            try:
                answer: dict[str, Any] = self.client.get_products(**params)
                return answer
            except ClientError as error:
                code, _ = error_code(error)
                if code in THROTTLING_CODES and attempt < self.attempts:
                    log.info("Price List: %s (%s); asking again in %g s", code, params["ServiceCode"], pause)
                    self.sleep(pause)
                    waited += pause
                    pause *= 2
                    continue
                if code in THROTTLING_CODES:
                    raise PriceListError(
                        f"AWS's Price List (endpoint {self.endpoint}) is throttling {ACTION}: {self.attempts} "
                        f"attempts over {waited:g} s; nothing was changed, try again later."
                    ) from None
                if code in ACCESS_DENIED_CODES:
                    raise PriceListDeniedError(self.endpoint) from None
                raise translate_client_error(error, ACTION, f"Price List endpoint {self.endpoint}") from None
            except NoCredentialsError:
                raise CredentialsError(
                    "No AWS credentials for the bot's own identity (account A): give the host an instance profile "
                    "or set AWS_PROFILE / AWS_ACCESS_KEY_ID."
                ) from None
            except BotoCoreError as error:
                raise translate_transport_error(error, ACTION, f"Price List endpoint {self.endpoint}") from None
        raise AssertionError("unreachable")  # pragma: no cover


def _problem(what: str, values: set[float]) -> str:
    if not values:
        return f"no {what} price"
    return f"several {what} prices ({', '.join(f'${v:g}' for v in sorted(values))})"


def _matches(product: Mapping[str, Any], terms: Mapping[str, str]) -> bool:
    """The product is what the filters asked for (checked, not assumed), and an on-demand one."""
    found = product.get("product", {})
    attributes: dict[str, object] = {**found.get("attributes", {}), "productFamily": found.get("productFamily")}
    if any(attributes.get(field) != value for field, value in terms.items()):
        return False
    return attributes.get("marketoption", "OnDemand") == "OnDemand"  # not a Capacity Block's price


def on_demand_usd(product: Mapping[str, Any]) -> float | None:
    """The product's on-demand price per hour in USD, as AWS states it; None if it states none or several."""
    stated: set[float] = set()
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        for dimension in term.get("priceDimensions", {}).values():
            if dimension.get("unit") not in HOURLY_UNITS:
                continue
            try:
                stated.add(float(dimension["pricePerUnit"]["USD"]))
            except (KeyError, TypeError, ValueError):
                continue
    return stated.pop() if len(stated) == 1 else None


# -- the bot's own reader (PRICES=api) -----------------------------------------------------------


class ApiPrices:
    """What the bot reads once a day (``PRICES=api``): the prices of the types it sees, in its region."""

    def __init__(self, endpoint: str, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.endpoint = endpoint
        self._sleep = sleep
        self._client: Any = None

    def __call__(self, region: str, types: Iterable[str], day: date) -> PricesRead:
        if self._client is None:
            self._client = pricing_client(self.endpoint)
        reader = PriceList(
            self._client, self.endpoint, attempts=BOT_ATTEMPTS, first_pause=BOT_FIRST_PAUSE, sleep=self._sleep
        )
        return reader.read({region: list(types)}, day)


# -- the command -------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        self.exit(2, f"prices: {message} (--help says more)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m emrchatops.aws.prices",
        description="Write a PRICES_FILE from AWS's Price List (pricing:GetProducts, the bot's own identity).",
    )
    parser.add_argument("--out", required=True, help="the file to write (replaced whole, only once all is read)")
    parser.add_argument("--region", action="append", default=[], help="a region to read (repeatable)")
    parser.add_argument("--type", action="append", default=[], help="an instance type to read (repeatable)")
    parser.add_argument("--like", help="read the regions and types of this table (default: the shipped one)")
    parser.add_argument(
        "--endpoint",
        default=PRICE_LIST_ENDPOINTS[0],
        help=f"the Price List endpoint: {', '.join(PRICE_LIST_ENDPOINTS)}",
    )
    return parser


def wanted_from(regions: Sequence[str], types: Sequence[str], like: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """Region -> types to read: those given, else those of the *like* table (in that region, or anywhere in it)."""
    every = {t for region_types in like.values() for t in region_types}
    return {region: set(types) or set(like.get(region, every)) for region in (regions or list(like))}


def main(
    argv: Sequence[str] | None = None,
    *,
    client: Any = None,
    today: date | None = None,
    sleep: Callable[[float], None] = time.sleep,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Exit 0: the file is written (missing prices said on *err*); 1: nothing written, one line why; 2: bad usage."""
    args = _parser().parse_args(argv)

    def usage(problem: str) -> int:
        print(f"prices: {problem}", file=err)
        return 2

    if args.endpoint not in PRICE_LIST_ENDPOINTS:
        return usage(f"--endpoint {args.endpoint!r}: the Price List answers in {', '.join(PRICE_LIST_ENDPOINTS)}")
    bad = [r for r in args.region if not REGION_RE.fullmatch(r)]
    if bad:
        return usage(f"--region {bad[0]!r} is not a region name (like us-east-1)")
    bad = [t for t in args.type if not INSTANCE_TYPE_RE.fullmatch(t)]
    if bad:
        return usage(f"--type {bad[0]!r} is not an instance type (like m5.xlarge)")
    try:
        like = read_prices(args.like)
    except PriceError as problem:
        return usage(f"--like: {problem}")
    wanted = wanted_from(args.region, args.type, {r: list(types) for r, types in like.regions.items()})
    reader = PriceList(client if client is not None else pricing_client(args.endpoint), args.endpoint, sleep=sleep)
    day = today or datetime.now(UTC).date()
    try:
        reading = reader.read(wanted, day)
    except EmrChatopsError as error:
        print(f"prices: {one_line(str(error))} ({args.out} not written)", file=err)
        return 1
    for missing in reading.missing:
        print(f"prices: {missing}", file=err)
    table = reading.table()
    if table is None:
        print(f"prices: AWS's Price List has none of the prices asked for; {args.out} not written", file=err)
        return 1
    data = table_data(table)
    price_table(data)  # what the bot will load
    try:
        _write(Path(args.out), json.dumps(data, indent=1) + "\n")
    except OSError as error:
        print(f"prices: cannot write {args.out}: {error.strerror or error.__class__.__name__}", file=err)
        return 1
    count = sum(len(types) for types in table.regions.values())
    print(
        f"Wrote {count} price{'s' if count != 1 else ''} ({len(table.regions)} region"
        f"{'s' if len(table.regions) != 1 else ''}) read from AWS's Price List (endpoint {args.endpoint}, "
        f"{reader.requests} requests) on {day.isoformat()} to {args.out}"
        + (f"; {len(reading.missing)} left out (above)" if reading.missing else ""),
        file=out,
    )
    return 0


def _write(path: Path, text: str) -> None:
    """Replace *path* whole: written beside it, then renamed over it."""
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


if __name__ == "__main__":
    sys.exit(main())
