"""Checks Wardkey's OpenAPI document with validators nobody here wrote.

usage: validate_openapi.py DOCUMENT.json [RESPONSES.json]

1. The document itself: openapi-spec-validator (OpenAPI 3.1 meta-schema and its semantic
   checks: unique operation ids, path parameters declared, $refs resolvable, ...).
2. Real responses: RESPONSES.json is a list of {"method", "path", "status", "body"} captured
   from the running server; each body is validated (openapi-schema-validator, OAS 3.1 dialect)
   against the schema the document declares for that operation and status, so a response the
   document describes wrongly (a null where it promises an object) fails here.

Exit status 0 when everything conforms; otherwise 1 with every failure on standard error.
"""

import json
import sys

from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOC_URI = "urn:wardkey:openapi"


def response_schema(doc, method, path, status):
    op = doc["paths"][path][method.lower()]
    responses = op["responses"]
    resp = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX") or responses.get("default")
    if resp is None:
        raise KeyError(f"{method} {path}: no response documented for {status}")
    content = resp.get("content") or {}
    media = content.get("application/json") or content.get("application/problem+json")
    if media is None or "schema" not in media:
        raise KeyError(f"{method} {path} {status}: no JSON schema documented")
    return media["schema"]


def rebase(node):
    """Local `#/components/...` references, made absolute so they resolve against the document."""
    if isinstance(node, dict):
        return {k: (DOC_URI + v if k == "$ref" and isinstance(v, str) and v.startswith("#") else rebase(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [rebase(v) for v in node]
    return node


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        doc = json.load(f)
    failures = []
    try:
        validate(doc)
    except Exception as e:  # the validator's own error types; report whatever it found
        failures.append(f"document: {e}")
    checked = 0
    if len(sys.argv) > 2:
        with open(sys.argv[2], encoding="utf-8") as f:
            cases = json.load(f)
        registry = Registry().with_resource(DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012))
        for case in cases:
            label = f"{case['method']} {case['path']} -> {case['status']}"
            try:
                schema = rebase(response_schema(doc, case["method"], case["path"], case["status"]))
                errors = sorted(OAS31Validator(schema, registry=registry).iter_errors(case["body"]), key=str)
                for err in errors:
                    where = "/".join(str(p) for p in err.absolute_path)
                    failures.append(f"{label}: at /{where}: {err.message}")
                checked += 1
            except Exception as e:
                failures.append(f"{label}: {e}")
    for line in failures:
        print(line, file=sys.stderr)
    print(f"openapi: document {'invalid' if failures else 'valid'}; {checked} responses checked; {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
