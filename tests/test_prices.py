"""Prices from AWS's Price List (DESIGN §19): the command, from recorded answers.

moto has no Price List API: the answers are botocore's Stubber on a real ``pricing`` client, in the
shape of ``GetProducts`` (``PriceList`` is a list of JSON *strings*, each a product with
``product.attributes`` and ``terms.OnDemand.<sku.offer>.priceDimensions.<…>.pricePerUnit.USD``),
built from the products in ``tests/fixtures/pricing/``. The Stubber also checks each request's
parameters, and refuses any request it was not given an answer for: nothing reaches AWS.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from conftest import Clock
from demo.emulator import Seeded
from emrchatops.aws import prices
from emrchatops.domain.costs import Cost, Instances, Price, cost_between, read_prices

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "pricing"
DAY = date(2026, 12, 1)
LINUX = [
    {"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"},
    {"Type": "TERM_MATCH", "Field": "tenancy", "Value": "Shared"},
    {"Type": "TERM_MATCH", "Field": "preInstalledSw", "Value": "NA"},
    {"Type": "TERM_MATCH", "Field": "capacitystatus", "Value": "Used"},
]
EMR_FEE = [
    {"Type": "TERM_MATCH", "Field": "productFamily", "Value": "Elastic Map Reduce Instance"},
    {"Type": "TERM_MATCH", "Field": "softwareType", "Value": "EMR"},
]
USAGE_PREFIX = {"us-east-1": "", "ap-northeast-1": "APN1-", "eu-west-1": "EU-"}


def product(service: str, region: str, instance_type: str, usd: float, **attributes: str) -> str:
    """One product as GetProducts gives it (a JSON string), from the recorded one of *service*."""
    name = "ec2" if service == "AmazonEC2" else "emr"
    doc = json.loads((FIXTURES / f"{name}-m5.xlarge-us-east-1.json").read_text(encoding="utf-8"))
    doc = copy.deepcopy(doc)
    usage = f"{USAGE_PREFIX.get(region, 'XX-')}BoxUsage:{instance_type}"
    doc["product"]["attributes"].update(regionCode=region, instanceType=instance_type, usagetype=usage, **attributes)
    for term in doc["terms"]["OnDemand"].values():
        for dimension in term["priceDimensions"].values():
            dimension["pricePerUnit"]["USD"] = f"{usd:.10f}"
            dimension["description"] = f"${usd:g} per On Demand Linux {instance_type} Instance Hour"
    return json.dumps(doc)


def page(*products: str, token: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"FormatVersion": "aws_v1", "PriceList": list(products)}
    if token:
        answer["NextToken"] = token
    return answer


def asked(service: str, region: str, instance_type: str | None = None, token: str | None = None) -> dict[str, Any]:
    """The parameters of a GetProducts request for *service* in *region* (of one type, or all)."""
    terms = LINUX if service == "AmazonEC2" else EMR_FEE
    where = [{"Type": "TERM_MATCH", "Field": "regionCode", "Value": region}]
    if instance_type:
        where.append({"Type": "TERM_MATCH", "Field": "instanceType", "Value": instance_type})
    params: dict[str, Any] = {
        "ServiceCode": service,
        "Filters": terms + where,
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
    }
    if token:
        params["NextToken"] = token
    return params


@pytest.fixture
def pricing() -> Iterator[tuple[Any, Stubber]]:
    """A real Price List client with a Stubber: every answer is given by the test, every request checked."""
    client = boto3.Session().client("pricing", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def one_type(stubber: Stubber, region: str, instance_type: str, ec2: float, emr: float) -> None:
    stubber.add_response(
        "get_products",
        page(product("AmazonEC2", region, instance_type, ec2)),
        asked("AmazonEC2", region, instance_type),
    )
    stubber.add_response(
        "get_products",
        page(product("ElasticMapReduce", region, instance_type, emr)),
        asked("ElasticMapReduce", region, instance_type),
    )


def run(pricing: tuple[Any, Stubber], *argv: str, sleeps: list[float] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    pause = (sleeps if sleeps is not None else []).append
    code = prices.main(list(argv), client=pricing[0], today=DAY, sleep=pause, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


# -- what is read -----------------------------------------------------------------------------------


def test_an_emr_fee_that_is_not_25_percent_of_ec2_is_read_not_computed(pricing: tuple[Any, Stubber]) -> None:
    client, stubber = pricing
    one_type(stubber, "us-east-1", "m4.xlarge", ec2=0.20, emr=0.06)  # the EMR fee is 30 % here
    read = prices.PriceList(client, "us-east-1").read({"us-east-1": ["m4.xlarge"]}, DAY)
    assert read.missing == () and read.prices == {"us-east-1": {"m4.xlarge": Price(0.2, 0.06, read=DAY)}}
    table = read.table()
    assert table is not None
    one = (Instances("m4.xlarge", 1),)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    cost = cost_between(table, "us-east-1", [(start, one)], start, start + timedelta(hours=10))
    assert isinstance(cost, Cost) and not cost.estimated
    assert round(cost.dollars, 2) == 2.60  # 10 h × ($0.20 + $0.06); a 25 % rule would say $2.50


def test_several_pages_are_read_to_the_last(pricing: tuple[Any, Stubber]) -> None:
    # Six types in a region: one query per service code for the whole region, paged.
    client, stubber = pricing
    types = {"m5.xlarge": (0.192, 0.048), "m5.2xlarge": (0.384, 0.096), "r5.xlarge": (0.252, 0.063)}
    types |= {"c5.xlarge": (0.17, 0.043), "m4.xlarge": (0.2, 0.06), "m4.large": (0.1, 0.03)}
    ec2 = [product("AmazonEC2", "us-east-1", t, p[0]) for t, p in types.items()]
    emr = [product("ElasticMapReduce", "us-east-1", t, p[1]) for t, p in types.items()]
    unwanted = product("AmazonEC2", "us-east-1", "x2iedn.xlarge", 1.0)
    capacity_block = product("AmazonEC2", "us-east-1", "m5.xlarge", 9.99, marketoption="CapacityBlock")
    other_region = product("AmazonEC2", "us-west-2", "r5.xlarge", 0.5)  # never trusted to the filter alone
    ec2_pages = [
        page(*ec2[:2], unwanted, token="t1"),
        page(capacity_block, *ec2[2:4], token="t2"),
        page(ec2[4], other_region, token="t3"),
        page(ec2[5]),
    ]
    for number, (answer, token) in enumerate(zip(ec2_pages, [None, "t1", "t2", "t3"], strict=True)):
        assert ("NextToken" in answer) == (number < 3)
        stubber.add_response("get_products", answer, asked("AmazonEC2", "us-east-1", token=token))
    stubber.add_response("get_products", page(*emr[:3], token="e1"), asked("ElasticMapReduce", "us-east-1"))
    stubber.add_response("get_products", page(*emr[3:]), asked("ElasticMapReduce", "us-east-1", token="e1"))
    reader = prices.PriceList(client, "us-east-1")
    read = reader.read({"us-east-1": list(types)}, DAY)
    assert read.prices["us-east-1"] == {t: Price(*p, read=DAY) for t, p in types.items()}
    assert read.missing == () and reader.requests == 6


def test_a_type_without_a_price_is_left_out_with_a_line_naming_it(pricing: tuple[Any, Stubber], tmp_path: Path) -> None:
    _, stubber = pricing
    # Three types of one region: asked type by type, EC2 first, then EMR (the Stubber checks the order).
    ec2 = {"m5.xlarge": [product("AmazonEC2", "eu-west-1", "m5.xlarge", 0.214)], "x9.huge": []}
    ec2["z1d.large"] = [product("AmazonEC2", "eu-west-1", "z1d.large", 0.2)]
    emr = {"m5.xlarge": [product("ElasticMapReduce", "eu-west-1", "m5.xlarge", 0.053)], "x9.huge": [], "z1d.large": []}
    for service, found in (("AmazonEC2", ec2), ("ElasticMapReduce", emr)):
        for instance_type, products in found.items():
            stubber.add_response("get_products", page(*products), asked(service, "eu-west-1", instance_type))
    out = tmp_path / "prices.json"
    code, said, err = run(
        pricing,
        "--out",
        str(out),
        "--region",
        "eu-west-1",
        "--type",
        "m5.xlarge",
        "--type",
        "x9.huge",
        "--type",
        "z1d.large",
    )
    assert code == 0, err
    assert err.splitlines() == [
        "prices: no EC2 price and no EMR price for x9.huge in eu-west-1 in AWS's Price List: left out",
        "prices: no EMR price for z1d.large in eu-west-1 in AWS's Price List: left out",
    ]
    table = read_prices(out)
    assert table.regions == {"eu-west-1": {"m5.xlarge": Price(0.214, 0.053, read=DAY)}}  # nothing invented
    assert said.startswith("Wrote 1 price (1 region) read from AWS's Price List (endpoint us-east-1, 6 requests)")
    assert said.rstrip().endswith("; 2 left out (above)")


def test_several_prices_for_one_type_are_not_guessed_between(pricing: tuple[Any, Stubber]) -> None:
    client, stubber = pricing
    two = page(
        product("AmazonEC2", "us-east-1", "m5.xlarge", 0.192), product("AmazonEC2", "us-east-1", "m5.xlarge", 0.2)
    )
    stubber.add_response("get_products", two, asked("AmazonEC2", "us-east-1", "m5.xlarge"))
    stubber.add_response(
        "get_products",
        page(product("ElasticMapReduce", "us-east-1", "m5.xlarge", 0.048)),
        asked("ElasticMapReduce", "us-east-1", "m5.xlarge"),
    )
    read = prices.PriceList(client, "us-east-1").read({"us-east-1": ["m5.xlarge"]}, DAY)
    assert read.prices == {"us-east-1": {}} and read.table() is None
    assert [str(m) for m in read.missing] == [
        "several EC2 prices ($0.192, $0.2) for m5.xlarge in us-east-1 in AWS's Price List: left out"
    ]


# -- the command ------------------------------------------------------------------------------------


def test_the_command_writes_a_table_the_bot_loads_and_prices_from(
    pricing: tuple[Any, Stubber], tmp_path: Path, start_bot: Any, clock: Clock, seeded: Seeded
) -> None:
    out = tmp_path / "prices.json"
    one_type(pricing[1], "ap-northeast-1", "m5.xlarge", 0.248, 0.06)  # (recorded for the test: not AWS's figure)
    code, said, err = run(pricing, "--out", str(out), "--region", "ap-northeast-1", "--type", "m5.xlarge")
    assert (code, err) == (0, "")
    assert said == (
        f"Wrote 1 price (1 region) read from AWS's Price List (endpoint us-east-1, 2 requests) on 2026-12-01 to {out}\n"
    )
    written = json.loads(out.read_text())
    assert written["date"] == "2026-12-01" and written["source"].startswith("AWS Price List Query API (pricing:Get")
    assert written["regions"] == {"ap-northeast-1": {"m5.xlarge": {"ec2": 0.248, "emr": 0.06, "read": "2026-12-01"}}}
    bot = start_bot(PRICES_FILE=str(out))  # the emulator's analytics: 3 × m5.xlarge in ap-northeast-1
    bot.say("!emr lock")
    clock.advance(hours=1)
    assert "cost: ≈ $0.92 so far (3 × m5.xlarge, 1h 00m)" in bot.say("!emr status")  # 3 × $0.308; estimated: $0.93
    assert "Prices: AWS Price List Query API (pricing:GetProducts, endpoint us-east-1)" in bot.say("!emr report 1")


def test_without_regions_or_types_it_reads_those_of_the_shipped_table(pricing: tuple[Any, Stubber]) -> None:
    like = {"us-east-1": ["m5.xlarge", "r5.xlarge"], "eu-west-1": ["m5.xlarge"]}
    assert prices.wanted_from([], [], like) == {"us-east-1": {"m5.xlarge", "r5.xlarge"}, "eu-west-1": {"m5.xlarge"}}
    assert prices.wanted_from(["eu-west-1"], [], like) == {"eu-west-1": {"m5.xlarge"}}
    assert prices.wanted_from(["sa-east-1"], [], like) == {"sa-east-1": {"m5.xlarge", "r5.xlarge"}}
    assert prices.wanted_from([], ["c5.large"], like) == {"us-east-1": {"c5.large"}, "eu-west-1": {"c5.large"}}
    shipped = read_prices(None)
    assert prices.wanted_from([], [], {r: list(t) for r, t in shipped.regions.items()}) == {
        r: set(t) for r, t in shipped.regions.items()
    }


def test_the_endpoint_is_one_of_the_price_lists(
    monkeypatch: pytest.MonkeyPatch, pricing: tuple[Any, Stubber], tmp_path: Path
) -> None:
    endpoints: list[str] = []
    monkeypatch.setattr(prices, "pricing_client", lambda endpoint: endpoints.append(endpoint) or pricing[0])
    one_type(pricing[1], "ap-south-1", "m5.xlarge", 0.101, 0.025)
    out, err = io.StringIO(), io.StringIO()
    argv = [
        "--out",
        str(tmp_path / "p.json"),
        "--endpoint",
        "ap-south-1",
        "--region",
        "ap-south-1",
        "--type",
        "m5.xlarge",
    ]
    assert prices.main(argv, today=DAY, out=out, err=err) == 0
    assert (
        endpoints == ["ap-south-1"] and "endpoint ap-south-1" in json.loads((tmp_path / "p.json").read_text())["source"]
    )


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--region", "tokyo"], "prices: --region 'tokyo' is not a region name (like us-east-1)"),
        (["--type", "m5"], "prices: --type 'm5' is not an instance type (like m5.xlarge)"),
        (
            ["--endpoint", "us-west-2"],
            "prices: --endpoint 'us-west-2': the Price List answers in us-east-1, eu-central-1, ap-south-1",
        ),
        (["--like", "/nonexistent.json"], "prices: --like: /nonexistent.json: no such file"),
        (["--colour"], "prices: unrecognized arguments: --colour (--help says more)"),
    ],
)
def test_bad_arguments_get_one_line_and_no_request(
    pricing: tuple[Any, Stubber], tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], line: str
) -> None:
    out = tmp_path / "prices.json"
    try:
        code, said, err = run(pricing, "--out", str(out), *argv)
    except SystemExit as exit_:  # argparse's own errors
        code, said, err = int(str(exit_.code)), "", capsys.readouterr().err
    assert (code, said, err) == (2, "", line + "\n") and not out.exists()


# -- throttling and refusals ----------------------------------------------------------------------


def test_throttling_is_retried_with_a_doubling_pause(pricing: tuple[Any, Stubber], tmp_path: Path) -> None:
    _, stubber = pricing
    for code in ("ThrottlingException", "TooManyRequestsException"):
        stubber.add_client_error("get_products", service_error_code=code, http_status_code=400)
    one_type(stubber, "us-east-1", "m5.xlarge", 0.192, 0.048)
    sleeps: list[float] = []
    code, said, err = run(
        pricing, "--out", str(tmp_path / "p.json"), "--region", "us-east-1", "--type", "m5.xlarge", sleeps=sleeps
    )
    assert (code, err, sleeps) == (0, "", [1.0, 2.0])
    assert "(endpoint us-east-1, 4 requests)" in said


def test_throttling_that_does_not_stop_is_one_line_and_the_old_file_stays(
    pricing: tuple[Any, Stubber], tmp_path: Path
) -> None:
    _, stubber = pricing
    for _ in range(5):
        stubber.add_client_error("get_products", service_error_code="ThrottlingException", http_status_code=400)
    out = tmp_path / "prices.json"
    out.write_text("the operator's table\n")
    sleeps: list[float] = []
    code, said, err = run(pricing, "--out", str(out), "--region", "us-east-1", "--type", "m5.xlarge", sleeps=sleeps)
    assert (code, said, sleeps) == (1, "", [1.0, 2.0, 4.0, 8.0])
    assert err == (
        "prices: AWS's Price List (endpoint us-east-1) is throttling pricing:GetProducts: 5 attempts over 15 s; "
        f"nothing was changed, try again later. ({out} not written)\n"
    )
    assert out.read_text() == "the operator's table\n"


def test_a_denied_request_names_the_permission_and_the_bot_s_own_policy(
    pricing: tuple[Any, Stubber], tmp_path: Path
) -> None:
    pricing[1].add_client_error(
        "get_products",
        service_error_code="AccessDeniedException",
        service_message="User: arn:aws:iam::111111111111:user/bot is not authorized to perform: pricing:GetProducts",
        http_status_code=400,
    )
    code, said, err = run(pricing, "--out", str(tmp_path / "p.json"), "--region", "us-east-1", "--type", "m5.xlarge")
    assert (code, said) == (1, "")
    assert err.startswith(
        "prices: AWS denied pricing:GetProducts to the bot's own identity (account A, Price List endpoint us-east-1): "
        "allow it in the bot's own policy (deploy/iam/account-a-assume.json, or the deploy/cloudformation/account-a.yaml"
    )
    assert err.count("\n") == 1


def test_an_answer_that_is_not_json_is_one_line(pricing: tuple[Any, Stubber], tmp_path: Path) -> None:
    pricing[1].add_response("get_products", page("{not json"), asked("AmazonEC2", "us-east-1", "m5.xlarge"))
    code, _, err = run(pricing, "--out", str(tmp_path / "p.json"), "--region", "us-east-1", "--type", "m5.xlarge")
    assert code == 1 and err.count("\n") == 1 and "with a product that is not JSON" in err


def test_no_credentials_is_one_line_and_nothing_is_sent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    client = prices.pricing_client("us-east-1")
    sent: list[Any] = []
    client.meta.events.register("before-send", lambda request, **_: sent.append(request) or {"refused": True})
    out, err = io.StringIO(), io.StringIO()
    argv = ["--out", str(tmp_path / "p.json"), "--region", "us-east-1", "--type", "m5.xlarge"]
    assert prices.main(argv, client=client, today=DAY, out=out, err=err) == 1
    assert err.getvalue() == (
        "prices: No AWS credentials for the bot's own identity (account A): give the host an instance profile or "
        f"set AWS_PROFILE / AWS_ACCESS_KEY_ID. ({tmp_path / 'p.json'} not written)\n"
    )
    assert sent == [] and not (tmp_path / "p.json").exists()


# -- the bot: PRICES=api ---------------------------------------------------------------------------

API = {"PRICES": "api", "END_OF_DAY": "off", "HOLD_REMIND_MINUTES": "off"}  # the held cluster runs for days


@pytest.fixture
def bot_pricing(monkeypatch: pytest.MonkeyPatch, pricing: tuple[Any, Stubber]) -> tuple[Stubber, list[str]]:
    """The bot's Price List client is the stubbed one; the endpoints it was made for, listed."""
    client, stubber = pricing
    endpoints: list[str] = []
    monkeypatch.setattr(prices, "pricing_client", lambda endpoint: endpoints.append(endpoint) or client)
    monkeypatch.setattr(prices, "BOT_FIRST_PAUSE", 0.001)
    return stubber, endpoints


def tokyo_m5(stubber: Stubber, emr: float) -> None:
    one_type(stubber, "ap-northeast-1", "m5.xlarge", 0.248, emr)


def test_prices_api_reads_the_types_the_bot_sees_once_a_day_into_its_storage(
    bot_pricing: tuple[Stubber, list[str]], start_bot: Any, clock: Clock, seeded: Seeded
) -> None:
    stubber, endpoints = bot_pricing
    bot = start_bot(**{**API, "PRICES": "api:eu-central-1"})
    assert bot.say("!emr lock").startswith("🔒 alice holds analytics")
    assert "(estimated prices; 3 × m5.xlarge" in bot.say("!emr status")  # nothing read yet: the shipped estimates
    tokyo_m5(stubber, emr=0.06)
    bot.tick()  # the instances are known: their prices are read
    assert endpoints == ["eu-central-1"]
    stubber.assert_no_pending_responses()
    kept = bot.plugin.get("prices")
    assert kept["table"]["regions"] == {
        "ap-northeast-1": {"m5.xlarge": {"ec2": 0.248, "emr": 0.06, "read": "2026-12-01"}}
    }
    clock.advance(hours=1)
    assert "cost: ≈ $0.92 so far (3 × m5.xlarge, 1h 00m)" in bot.say("!emr status")  # AWS's: 3 × $0.308
    for _ in range(22):  # a day of ticks: nothing more is asked (the Stubber refuses any request)
        clock.advance(hours=1)
        bot.tick()
    assert bot.plugin.get("prices")["read_at"] == kept["read_at"] and "prices" not in " ".join(bot.announcements())
    tokyo_m5(stubber, emr=0.065)  # a day after the first read: read again
    clock.advance(hours=1)
    bot.tick()
    stubber.assert_no_pending_responses()
    assert bot.plugin.get("prices")["table"]["regions"]["ap-northeast-1"]["m5.xlarge"]["read"] == "2026-12-02"
    bot = bot.restart()  # kept in the plugin's storage: priced at once, nothing asked
    report = bot.say("!emr report 2")
    assert (
        "estimated" not in report
        and "Prices: AWS Price List Query API (pricing:GetProducts, endpoint eu-central-1)" in report
    )


def test_a_failed_read_keeps_the_last_prices_and_is_announced_once(
    bot_pricing: tuple[Stubber, list[str]],
    start_bot: Any,
    clock: Clock,
    seeded: Seeded,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stubber, _ = bot_pricing
    bot = start_bot(**API)
    bot.say("!emr lock")
    for _ in range(prices.BOT_ATTEMPTS):
        stubber.add_client_error("get_products", service_error_code="ThrottlingException", http_status_code=400)
    bot.tick()
    [said] = [text for text in bot.announcements() if "Price List" in text]
    assert said == (
        "⚠ AWS's prices were not read (PRICES=api): AWS's Price List (endpoint us-east-1) is throttling "
        "pricing:GetProducts: 3 attempts over 0.003 s; nothing was changed, try again later. Costs stay at the "
        "shipped price table's (estimated); the bot tries again every hour, and says so here only once."
    )
    assert "(estimated prices; 3 × m5.xlarge" in bot.say("!emr status")
    bot.tick()  # not asked again at the next tick …
    clock.advance(hours=1)
    tokyo_m5(stubber, emr=0.06)
    bot.tick()  # … but an hour later
    assert "(estimated prices" not in bot.say("!emr status")
    clock.advance(hours=24)
    stubber.add_client_error("get_products", service_error_code="AccessDeniedException", http_status_code=400)
    bot.tick()
    clock.advance(hours=1)
    stubber.add_client_error("get_products", service_error_code="AccessDeniedException", http_status_code=400)
    bot.tick()
    denied = [text for text in bot.announcements() if "Price List" in text][1:]
    assert len(denied) == 1 and denied[0].startswith(
        "⚠ AWS's prices were not read (PRICES=api): AWS denied pricing:GetProducts to the bot's own identity"
    )
    assert denied[0].endswith(
        "Costs stay at the prices read on 2026-12-01; the bot tries again every hour, and says so here only once."
    )
    assert "cost: ≈ $" in bot.say("!emr status") and "(estimated prices" not in bot.say("!emr status")
    assert caplog.text.count("cannot read AWS's prices") == 3  # each failure is logged
    stubber.assert_no_pending_responses()


def test_the_doctor_reads_a_price_with_the_bot_s_own_identity_and_names_a_denial(
    bot_pricing: tuple[Stubber, list[str]], start_bot: Any, seeded: Seeded
) -> None:
    stubber, _ = bot_pricing
    bot = start_bot(PRICES="api")
    tokyo_m5(stubber, emr=0.06)  # the doctor asks for the types the managed clusters run
    lines = bot.say("!emr doctor", timeout=60).splitlines()
    [checked] = [text for text in lines if "Price List (pricing" in text]
    assert checked == (
        "✓ AWS's Price List (pricing:GetProducts, endpoint us-east-1): m5.xlarge in ap-northeast-1 EC2 $0.248 + "
        "EMR $0.06 per hour; the bot has not read any yet (at its next tick, then daily)"
    )
    [cost] = [text for text in lines if text.startswith("✓ EMR ListInstanceGroups")]
    assert cost.endswith("analytics 3 × m5.xlarge $0.93/h, estimated (the shipped price table of 2026-11-29)")
    tokyo_m5(stubber, emr=0.06)
    bot.tick()  # the bot reads them: the cost check prices with them
    tokyo_m5(stubber, emr=0.06)
    lines = bot.say("!emr doctor", timeout=60).splitlines()
    [cost] = [text for text in lines if text.startswith("✓ EMR ListInstanceGroups")]
    assert cost.endswith(
        "analytics 3 × m5.xlarge $0.92/h (AWS's Price List, read 2026-12-01, over the shipped price table of 2026-11-29)"
    )
    assert "the bot read them 2026-12-01 10:00 (Asia/Tokyo)" in next(t for t in lines if "Price List (pricing" in t)
    stubber.add_client_error("get_products", service_error_code="AccessDeniedException", http_status_code=400)
    lines = bot.say("!emr doctor", timeout=60).splitlines()
    at = next(i for i, text in enumerate(lines) if "Price List (pricing" in text)
    assert lines[at].startswith(
        "✗ AWS's Price List (pricing:GetProducts, endpoint us-east-1): AWS denied pricing:GetProducts"
    )
    assert lines[at + 1] == (
        "    fix: allow pricing:GetProducts to the bot's own identity (account A): the EmrChatopsReadPrices statement "
        "of deploy/iam/account-a-assume.json, or redeploy deploy/cloudformation/account-a.yaml"
    )


def test_a_type_aws_has_no_price_for_is_unknown_never_guessed_and_not_asked_again_that_day(
    bot_pricing: tuple[Stubber, list[str]],
    start_bot: Any,
    clock: Clock,
    seeded: Seeded,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stubber, _ = bot_pricing
    table = tmp_path / "prices.json"
    table.write_text(
        '{"source": "ours", "date": "2026-11-01", "regions": {"us-east-1": {"r5.xlarge": {"ec2": 1, "emr": 1}}}}'
    )
    bot = start_bot(**API, PRICES_FILE=str(table))
    bot.say("!emr lock")
    for service in ("AmazonEC2", "ElasticMapReduce"):
        stubber.add_response("get_products", page(), asked(service, "ap-northeast-1", "m5.xlarge"))
    bot.tick()
    assert "no EC2 price and no EMR price for m5.xlarge in ap-northeast-1 in AWS's Price List: left out" in caplog.text
    assert (
        "cost: cost unknown (no price for m5.xlarge in ap-northeast-1 in AWS's Price List (PRICES=api) nor in PRICES_FILE)"
        in bot.say("!emr status")
    )
    clock.advance(hours=23)
    bot.tick()  # not asked again before the next day (the Stubber has no answer for it)
    assert not [text for text in bot.announcements() if "Price List" in text]
