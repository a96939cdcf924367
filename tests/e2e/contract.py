"""contract - check lossd's HTTP replies against openapi.yaml (stdlib only).

openapi.yaml must describe exactly what the server does. This module holds
every reply the e2e suite receives to it: lossd_harness.Server.request()
hands each reply to Contract.check() when $LOSSD_OPENAPI_JSON names the
document converted to JSON (scripts/openapi-json.sh; Python's stdlib reads
no YAML, so the conversion is a build step, not a dependency of the tests).

    from contract import Contract
    c = Contract.from_env()            # None when LOSSD_OPENAPI_JSON is unset
    errs = c.check("GET", "/v1/streams/abc?curve=true", status, headers, body)

check() finds the operation (path templates such as /v1/streams/{id} match
one raw segment), the response (the exact status, else "default"; a $ref'd
response is resolved), the media type by the reply's Content-Type, and
validates the body against its schema. Contract failures:
  - a status the operation does not document, or a Content-Type its
    response does not list, or a body where the response has no content;
  - a body that does not parse or does not fit the schema;
  - a documented response header whose value does not fit its schema;
  - a problem+json whose "status" differs from the HTTP status;
  - a path the document does not have that is answered with anything but
    404 problem+json, and a method the path lacks answered with anything
    but 405 problem+json whose Allow lists the path's methods.
HEAD is checked as the path's GET without a body; OPTIONS on a listed path
as a 204 without a body whose Allow lists the path's methods (the CORS
preflight the description promises).

validate() is a JSON Schema (2020-12, as OpenAPI 3.1 uses it) validator for
the keywords openapi.yaml uses: $ref (#/... pointers, with siblings), type
(also lists such as [number, "null"]), properties, required,
additionalProperties, unevaluatedProperties (the properties of this schema,
of its allOf members and of the oneOf/anyOf members that matched count as
evaluated), items, enum, const, minimum, maximum, exclusiveMinimum,
exclusiveMaximum, minItems, maxItems, minLength, maxLength, pattern, oneOf
(exactly one), anyOf, allOf, not. Annotations (description, default,
examples, contentEncoding, format) are ignored. An unknown assertion keyword
raises, so a schema the checker cannot judge never passes by accident.

Counters: Contract.checked (replies checked, all instances of the process)
and Contract.failed.
"""

import json
import os
import re

_ANNOTATIONS = {
    "description", "default", "examples", "example", "title", "contentEncoding",
    "contentMediaType", "format", "deprecated", "readOnly", "writeOnly", "$comment",
    "summary",
}
_HANDLED = {
    "$ref", "type", "properties", "required", "additionalProperties",
    "unevaluatedProperties", "items", "enum", "const", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems", "minLength",
    "maxLength", "pattern", "oneOf", "anyOf", "allOf", "not",
}
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _reject_constant(name):
    raise ValueError("non-JSON constant %s" % name)


def _is_type(value, t):
    if t == "null":
        return value is None
    if t == "boolean":
        return isinstance(value, bool)
    if t == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "string":
        return isinstance(value, str)
    if t == "array":
        return isinstance(value, list)
    if t == "object":
        return isinstance(value, dict)
    raise ValueError("unknown JSON Schema type %r" % t)


def _short(value):
    s = json.dumps(value)
    return s if len(s) <= 80 else s[:77] + "..."


class Contract:
    checked = 0
    failed = 0

    def __init__(self, doc):
        self.doc = doc
        self.paths = []  # (segments, template, path item), exact paths first
        for template, item in doc.get("paths", {}).items():
            segs = template.split("/")
            self.paths.append((segs, template, item))
        self.paths.sort(key=lambda p: sum(s.startswith("{") for s in p[0]))

    _cache = {}

    @classmethod
    def from_env(cls):
        """The contract named by $LOSSD_OPENAPI_JSON (loaded once), or None."""
        path = os.environ.get("LOSSD_OPENAPI_JSON")
        if not path:
            return None
        if path not in cls._cache:
            with open(path, encoding="utf-8") as f:
                cls._cache[path] = cls(json.load(f))
        return cls._cache[path]

    # -- documents ------------------------------------------------------------
    def resolve(self, ref):
        if not ref.startswith("#/"):
            raise ValueError("only local $refs are supported: %r" % ref)
        node = self.doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[part]
        return node

    def _deref(self, node):
        while isinstance(node, dict) and "$ref" in node:
            node = self.resolve(node["$ref"])
        return node

    def match_path(self, raw_path):
        """(template, path item) for a raw path (query dropped), or (None, None)."""
        path = raw_path.split("?", 1)[0].split("#", 1)[0]
        segs = path.split("/")
        for tsegs, template, item in self.paths:
            if len(tsegs) != len(segs):
                continue
            # a {param} fits any one segment, even an empty one: the server
            # routes by shape first and answers a bad id with 400
            if all(t == s or (t.startswith("{") and t.endswith("}"))
                   for t, s in zip(tsegs, segs)):
                return template, item
        return None, None

    def operations(self, template):
        """The methods openapi.yaml lists for a path template, upper case."""
        item = self.doc["paths"][template]
        return [m.upper() for m in _METHODS if m in item]

    # -- replies --------------------------------------------------------------
    def check(self, method, raw_path, status, headers, body):
        """Every way the reply breaks the contract, as a list of strings."""
        Contract.checked += 1
        errs = self._check(method.upper(), raw_path, status, headers, body)
        if errs:
            Contract.failed += 1
        where = "%s %s -> %d" % (method, raw_path, status)
        return ["%s: %s" % (where, e) for e in errs]

    def _check(self, method, raw_path, status, headers, body):
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        head = method == "HEAD"
        template, item = self.match_path(raw_path)
        if template is None:
            if status != 404:
                return ["path is not in openapi.yaml, so the reply must be 404 (got %d)" % status]
            return self._check_problem(status, ctype, body, head)
        op_method = "get" if head else method.lower()
        if method == "OPTIONS" and op_method not in item:
            # Every listed path answers OPTIONS (CORS preflights; the
            # description's rule, like HEAD's): 204, no body, Allow.
            errs = [] if status == 204 else ["OPTIONS must be 204 (got %d)" % status]
            if body:
                errs.append("OPTIONS has a body")
            allow = {m.strip() for m in (headers.get("Allow") or "").split(",") if m.strip()}
            allowed = self.operations(template)
            want = set(allowed) | ({"HEAD"} if "GET" in allowed else set())
            if allow != want:
                errs.append("Allow is %r; openapi.yaml has %s" % (headers.get("Allow"),
                                                                 sorted(want)))
            return errs
        if op_method not in item:
            allowed = self.operations(template)
            errs = []
            if status != 405:
                return ["%s has no %s in openapi.yaml, so the reply must be 405 (got %d)"
                        % (template, method, status)]
            allow = {m.strip() for m in (headers.get("Allow") or "").split(",") if m.strip()}
            want = set(allowed) | ({"HEAD"} if "GET" in allowed else set())
            if allow != want:
                errs.append("Allow is %r; openapi.yaml has %s" % (headers.get("Allow"),
                                                                 sorted(want)))
            return errs + self._check_problem(status, ctype, body, head)
        op = item[op_method]
        responses = op.get("responses", {})
        resp = responses.get(str(status)) or responses.get("%dXX" % (status // 100))
        if resp is None:
            resp = responses.get("default")
        if resp is None:
            return ["status %d is not documented for %s %s (documented: %s)"
                    % (status, op_method.upper(), template, ", ".join(sorted(responses)))]
        resp = self._deref(resp)
        errs = []
        for name, hdr in (resp.get("headers") or {}).items():
            hdr = self._deref(hdr)
            value = headers.get(name)
            if value is None:
                if hdr.get("required"):
                    errs.append("required header %s is missing" % name)
                continue
            schema = hdr.get("schema", {})
            t = self._deref(schema).get("type")
            inst = value
            if t == "integer":
                try:
                    inst = int(value)
                except ValueError:
                    errs.append("header %s: %r is not an integer" % (name, value))
                    continue
            errs += ["header %s: %s" % (name, e) for e in self.validate(inst, schema)]
        content = resp.get("content")
        if not content:
            if body:
                errs.append("the response documents no content but the body has %d bytes"
                            % len(body))
            return errs
        media = content.get(ctype)
        if media is None:
            media = content.get(ctype.split("/")[0] + "/*") or content.get("*/*")
        if media is None:
            errs.append("Content-Type %r is not documented (documented: %s)"
                        % (headers.get("Content-Type"), ", ".join(sorted(content))))
            return errs
        if head:
            return errs
        return errs + self._check_body(ctype, media.get("schema"), body, status)

    def _check_problem(self, status, ctype, body, head):
        if ctype != "application/problem+json":
            return ["expected application/problem+json, got %r" % ctype]
        if head:
            return []
        schema = {"$ref": "#/components/schemas/Problem"}
        return self._check_body(ctype, schema, body, status)

    def _check_body(self, ctype, schema, body, status):
        if schema is None:
            return []
        if ctype.endswith("json"):
            try:
                value = json.loads(body, parse_constant=_reject_constant)
            except ValueError as e:
                return ["body is not JSON (%s): %r" % (e, body[:200])]
        else:
            try:
                value = body.decode("utf-8")
            except UnicodeDecodeError:
                return ["body is not UTF-8 text"]
        errs = self.validate(value, schema)
        if ctype == "application/problem+json" and isinstance(value, dict) \
                and value.get("status") != status:
            errs.append("problem status %r differs from the HTTP status" % value.get("status"))
        return errs

    # -- JSON Schema ----------------------------------------------------------
    def validate(self, value, schema, at=""):
        """Errors of value against schema, each prefixed with a JSON pointer."""
        errs, _ = self._validate(value, schema, at)
        return errs

    def _validate(self, value, schema, at):
        """(errors, names of evaluated properties) for unevaluatedProperties."""
        if schema is True or schema == {}:
            return [], set()
        if schema is False:
            return ["%s: no value is allowed here" % (at or "/")], set()
        unknown = set(schema) - _HANDLED - _ANNOTATIONS
        if unknown:
            raise ValueError("contract.py cannot check keyword(s) %s at %s"
                             % (sorted(unknown), at or "/"))
        here = at or "/"
        errs = []
        seen = set()
        if "$ref" in schema:
            e, s = self._validate(value, self.resolve(schema["$ref"]), at)
            errs += e
            seen |= s
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_is_type(value, t) for t in types):
                return errs + ["%s: %s is not of type %s" % (here, _short(value),
                                                           " or ".join(types))], seen
        if "enum" in schema and value not in schema["enum"]:
            errs.append("%s: %s is not one of %s" % (here, _short(value), schema["enum"]))
        if "const" in schema and value != schema["const"]:
            errs.append("%s: %s is not %s" % (here, _short(value), _short(schema["const"])))
        if _is_type(value, "number"):
            if "minimum" in schema and value < schema["minimum"]:
                errs.append("%s: %r < minimum %r" % (here, value, schema["minimum"]))
            if "maximum" in schema and value > schema["maximum"]:
                errs.append("%s: %r > maximum %r" % (here, value, schema["maximum"]))
            if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
                errs.append("%s: %r <= exclusiveMinimum %r"
                            % (here, value, schema["exclusiveMinimum"]))
            if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
                errs.append("%s: %r >= exclusiveMaximum %r"
                            % (here, value, schema["exclusiveMaximum"]))
        if isinstance(value, str):
            if "minLength" in schema and len(value) < schema["minLength"]:
                errs.append("%s: shorter than %d" % (here, schema["minLength"]))
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                errs.append("%s: longer than %d" % (here, schema["maxLength"]))
            if "pattern" in schema and not re.search(schema["pattern"], value):
                errs.append("%s: %s does not match %s" % (here, _short(value), schema["pattern"]))
        if isinstance(value, list):
            if "minItems" in schema and len(value) < schema["minItems"]:
                errs.append("%s: fewer than %d items" % (here, schema["minItems"]))
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                errs.append("%s: more than %d items" % (here, schema["maxItems"]))
            if "items" in schema:
                for i, v in enumerate(value):
                    errs += self._validate(v, schema["items"], "%s/%d" % (at, i))[0]
        if isinstance(value, dict):
            props = schema.get("properties", {})
            for name in schema.get("required", []):
                if name not in value:
                    errs.append("%s: required property %r is missing" % (here, name))
            for name, v in value.items():
                if name in props:
                    errs += self._validate(v, props[name], "%s/%s" % (at, name))[0]
            seen |= set(props)
            if "additionalProperties" in schema:
                extra = [n for n in value if n not in props]
                for name in extra:
                    if schema["additionalProperties"] is False:
                        errs.append("%s: property %r is not in the schema" % (here, name))
                    else:
                        errs += self._validate(value[name], schema["additionalProperties"],
                                               "%s/%s" % (at, name))[0]
                seen |= set(value)
        for sub in schema.get("allOf", []):
            e, s = self._validate(value, sub, at)
            errs += e
            seen |= s
        if "anyOf" in schema:
            good = [self._validate(value, sub, at) for sub in schema["anyOf"]]
            ok = [s for e, s in good if not e]
            if not ok:
                errs.append("%s: matches none of anyOf (%s)" % (
                    here, "; ".join(e[0] for e, _ in good if e)))
            for s in ok:
                seen |= s
        if "oneOf" in schema:
            good = [self._validate(value, sub, at) for sub in schema["oneOf"]]
            ok = [s for e, s in good if not e]
            if len(ok) != 1:
                detail = "; ".join(e[0] for e, _ in good if e) if not ok else \
                    "%d branches match" % len(ok)
                errs.append("%s: must match exactly one of oneOf (%s)" % (here, detail))
            for s in ok:
                seen |= s
        if "not" in schema and not self._validate(value, schema["not"], at)[0]:
            errs.append("%s: matches a schema it must not" % here)
        if "unevaluatedProperties" in schema and isinstance(value, dict):
            rest = schema["unevaluatedProperties"]
            for name in value:
                if name in seen:
                    continue
                if rest is False:
                    errs.append("%s: property %r is not in the schema" % (here, name))
                else:
                    errs += self._validate(value[name], rest, "%s/%s" % (at, name))[0]
            seen |= set(value)
        return errs, seen
