#!/usr/bin/env bash
# Loads an example model.json (see examples/*/README.md) into a running Wardkey through the
# admin API, with curl; python3 only reads and writes JSON.
#
#   WARDKEY_TOKEN=<admin API token> [WARDKEY_URL=http://127.0.0.1:8080] ./load_model.sh model.json
#
# Order: resource types, roles, groups, users (identity verification recorded with the
# model's `identity_verification_method`, then activated), memberships, grants; last, a new
# API token of scope `pdp` for the PEP is printed (skip it with NO_PDP_TOKEN=1).
#
# Re-runnable: a resource type, role, group or user that already exists by name is reused
# as it is (not changed: compare it with the model yourself), a user already active is left
# so, and a grant is not made again when an active one with the same subject and role exists.
set -euo pipefail

model="${1:?usage: WARDKEY_TOKEN=... $0 path/to/model.json}"
: "${WARDKEY_TOKEN:?set WARDKEY_TOKEN to an admin API token}"
url="${WARDKEY_URL:-http://127.0.0.1:8080}"
url="${url%/}"
command -v curl >/dev/null || { echo "curl is required" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
body="$work/body"

# api METHOD PATH [JSON]: the HTTP status on stdout, the response body in $body.
api() {
    local method="$1" path="$2" data="${3:-}"
    local args=(-sS -o "$body" -w '%{http_code}' -X "$method" -H "Authorization: Bearer $WARDKEY_TOKEN" -H 'Accept: application/json')
    if [ -n "$data" ]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$data")
    fi
    curl "${args[@]}" "$url$path"
}

# json EXPR [FILE]: evaluates a Python expression over the JSON in FILE (default: the last
# response) bound to `d`; strings print bare, anything else as compact JSON, None as nothing.
json() {
    python3 - "$1" "${2:-$body}" <<'PY'
import json, os, sys
with open(sys.argv[2]) as f:
    d = json.load(f)
v = eval(sys.argv[1], {"json": json, "os": os}, {"d": d})
if v is None:
    pass
elif isinstance(v, str):
    print(v)
else:
    print(json.dumps(v, separators=(",", ":")))
PY
}

# Each item of a model list, one compact JSON document per line.
each() {
    python3 - "$1" "$model" <<'PY'
import json, sys
with open(sys.argv[2]) as f:
    m = json.load(f)
for item in m.get(sys.argv[1], []):
    print(json.dumps(item, separators=(",", ":")))
PY
}

urlencode() {
    python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"
}

fail() {
    echo "error: $1 (HTTP $2)" >&2
    cat "$body" >&2 || true
    echo >&2
    exit 1
}

# find_by_name PATH FIELD NAME: the id of the listed record whose FIELD equals NAME
# (case-insensitive, as Wardkey compares names), following next_cursor.
find_by_name() {
    local path="$1" field="$2" name="$3" after="" sep status found
    case "$path" in *\?*) sep='&' ;; *) sep='?' ;; esac
    while :; do
        status="$(api GET "$path${sep}limit=500${after:+&after=$after}")"
        [ "$status" = 200 ] || fail "listing $path" "$status"
        found="$(FIELD="$field" NAME="$name" json "next((i['id'] for i in d['items'] if str(i.get(os.environ['FIELD'], '')).lower() == os.environ['NAME'].lower()), None)")"
        if [ -n "$found" ]; then echo "$found"; return 0; fi
        after="$(json "d.get('next_cursor')")"
        [ -n "$after" ] || return 1
    done
}

declare -A role_ids group_ids user_ids

echo "Loading $model into $url"

while IFS= read -r t; do
    [ -n "$t" ] || continue
    name="$(json "d['name']" <(echo "$t"))"
    status="$(api POST /api/v1/resource-types "$t")"
    case "$status" in
        201) echo "resource type $name: created" ;;
        409) echo "resource type $name: exists, reused" ;;
        *) fail "resource type $name" "$status" ;;
    esac
done < <(each resource_types)

while IFS= read -r r; do
    [ -n "$r" ] || continue
    name="$(json "d['name']" <(echo "$r"))"
    status="$(api POST /api/v1/roles "$r")"
    case "$status" in
        201) role_ids[$name]="$(json "d['id']")"; echo "role $name: created" ;;
        409) role_ids[$name]="$(find_by_name /api/v1/roles name "$name")" || fail "role $name exists but was not found" 409
             echo "role $name: exists, reused (not changed)" ;;
        *) fail "role $name" "$status" ;;
    esac
done < <(each roles)

while IFS= read -r g; do
    [ -n "$g" ] || continue
    name="$(json "d['name']" <(echo "$g"))"
    status="$(api POST /api/v1/groups "$g")"
    case "$status" in
        201) group_ids[$name]="$(json "d['id']")"; echo "group $name: created" ;;
        409) group_ids[$name]="$(find_by_name /api/v1/groups name "$name")" || fail "group $name exists but was not found" 409
             echo "group $name: exists, reused" ;;
        *) fail "group $name" "$status" ;;
    esac
done < <(each groups)

method="$(json "d.get('identity_verification_method', 'interop_fixture')" "$model")"
while IFS= read -r u; do
    [ -n "$u" ] || continue
    name="$(json "d['username']" <(echo "$u"))"
    status="$(api POST /api/v1/users "$u")"
    case "$status" in
        201) uid="$(json "d['id']")"; echo "user $name: created" ;;
        409) uid="$(find_by_name "/api/v1/users?username_prefix=$(urlencode "$name")" username "$name")" || fail "user $name exists but was not found" 409
             status="$(api GET "/api/v1/users/$uid")"
             [ "$status" = 200 ] || fail "reading user $name" "$status"
             echo "user $name: exists, reused" ;;
        *) fail "user $name" "$status" ;;
    esac
    user_ids[$name]="$uid"
    state="$(json "d['status']")"
    if [ "$state" = pending_verification ]; then
        if [ -z "$(json "d.get('verification')")" ]; then
            status="$(api POST "/api/v1/users/$uid/verify-identity" "{\"version\": $(json "d['version']"), \"method\": \"$method\"}")"
            [ "$status" = 200 ] || fail "verifying the identity of $name" "$status"
        fi
        status="$(api POST "/api/v1/users/$uid/status" "{\"version\": $(json "d['version']"), \"status\": \"active\"}")"
        [ "$status" = 200 ] || fail "activating $name" "$status"
        echo "user $name: identity verified ($method), active"
    elif [ "$state" != active ]; then
        echo "warning: user $name is $state; left as it is (decisions for it are denials)" >&2
    fi
done < <(each users)

while IFS= read -r m; do
    [ -n "$m" ] || continue
    group="$(json "d['group']" <(echo "$m"))"
    name="$(json "d['username']" <(echo "$m"))"
    status="$(api POST "/api/v1/groups/${group_ids[$group]}/members" "{\"type\": \"user\", \"id\": \"${user_ids[$name]}\"}")"
    case "$status" in
        201) echo "member $name of $group: added" ;;
        200) echo "member $name of $group: already" ;;
        *) fail "adding $name to $group" "$status" ;;
    esac
done < <(each memberships)

while IFS= read -r g; do
    [ -n "$g" ] || continue
    role="$(json "d['role']" <(echo "$g"))"
    group="$(json "d.get('group')" <(echo "$g"))"
    if [ -n "$group" ]; then
        kind=group; sid="${group_ids[$group]}"; who="group $group"
    else
        name="$(json "d['username']" <(echo "$g"))"
        kind=user; sid="${user_ids[$name]}"; who="user $name"
    fi
    rid="${role_ids[$role]}"
    status="$(api GET "/api/v1/grants?subject_type=$kind&subject_id=$sid&role_id=$rid")"
    [ "$status" = 200 ] || fail "listing the grants of $who" "$status"
    if [ "$(json "len(d['items'])")" != 0 ]; then
        echo "grant $role to $who: already active"
        continue
    fi
    status="$(api POST /api/v1/grants "{\"subject\": {\"type\": \"$kind\", \"id\": \"$sid\"}, \"role_id\": \"$rid\", \"justification\": \"OpenID AuthZEN interop example\"}")"
    [ "$status" = 201 ] || fail "granting $role to $who" "$status"
    echo "grant $role to $who: created"
done < <(each grants)

if [ "${NO_PDP_TOKEN:-0}" != 1 ]; then
    status="$(api POST /api/v1/tokens '{"name": "authzen-interop-pep", "scopes": ["pdp"]}')"
    [ "$status" = 201 ] || fail "creating the pdp token" "$status"
    echo
    echo "PDP token for the PEP (shown once):"
    json "d['secret']"
fi
