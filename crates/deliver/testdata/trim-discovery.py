#!/usr/bin/env python3
"""Trim Google's Chat API discovery document to what trailkeep's test receivers validate.

Usage: trim-discovery.py path/to/chat.v1.json > chat.v1.json

The input is `googleapiclient/discovery_cache/documents/chat.v1.json` from the
google-api-python-client wheel on PyPI (see NOTICE). The output is a subset of the same
discovery document, in the same layout:

- `id`, `name`, `version`, `revision`, `documentationLink`;
- the standard query `parameters` every method takes (`key`, `alt`, ...);
- `resources.spaces.resources.messages.methods.create` (request, response, path and
  parameters);
- the `schemas` reachable from `Message`.

Descriptions are dropped (they are most of the document's size). A property whose
description says it is "Output only" keeps that fact as `"readOnly": true`; the document
already marks all of them that way, and the script says on stderr if it had to add any.
"""

import json
import re
import sys

# Keys of a schema or parameter that carry meaning for validation.
KEEP = {
    "$ref",
    "additionalProperties",
    "default",
    "deprecated",
    "enum",
    "format",
    "id",
    "items",
    "location",
    "pattern",
    "properties",
    "readOnly",
    "repeated",
    "required",
    "type",
}

# "Output only." at the start of a description, possibly after "Optional." and the like.
OUTPUT_ONLY = re.compile(r"^(?:[A-Z][a-z]+\.\s+)*Output only\.")

added_read_only = []


def trim(node, where):
    """A copy of a schema or parameter node with only the keys in KEEP, recursively."""
    out = {}
    for key, value in node.items():
        if key not in KEEP:
            continue
        if key == "properties":
            out[key] = {name: trim(prop, f"{where}.{name}") for name, prop in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = trim(value, f"{where}[{key}]")
        else:
            out[key] = value
    if OUTPUT_ONLY.match(node.get("description", "")) and not node.get("readOnly"):
        out["readOnly"] = True
        added_read_only.append(where)
    return out


def refs(node):
    """Every `$ref` under a node."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: trim-discovery.py path/to/chat.v1.json > chat.v1.json")
    with open(sys.argv[1], encoding="utf-8") as f:
        doc = json.load(f)

    schemas = doc["schemas"]
    reachable, todo = set(), ["Message"]
    while todo:
        name = todo.pop()
        if name in reachable:
            continue
        reachable.add(name)
        todo.extend(refs(schemas[name]))

    create = doc["resources"]["spaces"]["resources"]["messages"]["methods"]["create"]
    method = {
        key: create[key]
        for key in ("id", "httpMethod", "path", "flatPath", "parameterOrder", "request", "response")
    }
    method["parameters"] = {
        name: trim(param, f"create.{name}") for name, param in create["parameters"].items()
    }

    out = {
        "id": doc["id"],
        "name": doc["name"],
        "version": doc["version"],
        "revision": doc["revision"],
        "documentationLink": doc["documentationLink"],
        "parameters": {name: trim(p, f"parameters.{name}") for name, p in doc["parameters"].items()},
        "resources": {
            "spaces": {"resources": {"messages": {"methods": {"create": method}}}}
        },
        "schemas": {name: trim(schemas[name], name) for name in sorted(reachable)},
    }
    if added_read_only:
        print(
            f"marked {len(added_read_only)} 'Output only' properties readOnly: "
            + ", ".join(added_read_only),
            file=sys.stderr,
        )
    json.dump(out, sys.stdout, indent=1, sort_keys=True, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
