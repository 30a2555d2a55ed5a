# emr-chatops: the bot as a container image (docs/operator-guide.md, "Two instances"; deploy/cloudformation/ecs-fargate.yaml).
#
#   docker build -t emr-chatops .
#   docker run --rm --env-file /etc/emr-chatops/env emr-chatops
#
# Code and dependencies are root-owned and read-only for the bot, which runs as its own user and
# writes only its data dir (errbot's BOT_DATA_DIR and log; the state itself is in DynamoDB with
# EMR_CHATOPS_STORAGE=dynamodb, or in SQLite files there otherwise). Linted by deploy/check.sh (hadolint).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The pinned runtime requirements only (requirements.txt; not the dev tools), in their own layer.
WORKDIR /opt/emr-chatops
COPY requirements.txt ./
RUN python -m pip install --no-cache-dir --no-compile -r requirements.txt

COPY config.py ./
COPY plugins ./plugins
COPY storage ./storage

# The bot's own user, and its data dir (a volume: ECS copies its owner and contents into the task's volume).
RUN groupadd --system --gid 10001 emr-chatops \
    && useradd --system --uid 10001 --gid emr-chatops --home-dir /var/lib/emr-chatops --no-create-home \
       --shell /usr/sbin/nologin emr-chatops \
    && install -d -o emr-chatops -g emr-chatops -m 0700 /var/lib/emr-chatops /var/lib/emr-chatops/tmp
VOLUME ["/var/lib/emr-chatops"]
ENV EMR_CHATOPS_DATA_DIR=/var/lib/emr-chatops \
    HOME=/var/lib/emr-chatops \
    TMPDIR=/var/lib/emr-chatops/tmp \
    MPLCONFIGDIR=/var/lib/emr-chatops/matplotlib

USER 10001:10001

# SIGINT, not SIGTERM: errbot handles no SIGTERM (Python dies at once, no plugin is deactivated),
# while SIGINT is a KeyboardInterrupt that errbot turns into a clean shutdown — the EMR plugin stops
# its poller and saves its usage ledger. The storages need no clean stop: SQLite commits and DynamoDB
# acknowledges every write before it returns (tests/test_deploy.py checks both signals on a real errbot).
STOPSIGNAL SIGINT
CMD ["errbot", "-c", "/opt/emr-chatops/config.py"]
