#!/usr/bin/env python3
"""Validates JSON documents against schemas of an OpenAPI 3.1 document (python3-jsonschema).

Usage: validate_openapi.py OPENAPI.json SCHEMA=FILE.json [SCHEMA=FILE.json ...]
Each FILE is checked against #/components/schemas/SCHEMA; exits 1 naming every mismatch.
"""
import json
import sys

import jsonschema


def main():
    spec = json.load(open(sys.argv[1]))
    failures = 0
    for pair in sys.argv[2:]:
        name, path = pair.split("=", 1)
        document = json.load(open(path))
        schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
        validator = jsonschema.Draft202012Validator(schema)
        for error in validator.iter_errors(document):
            failures += 1
            print(f"{path} ({name}): {list(error.absolute_path)}: {error.message}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
