"""An API-conformance checker for requests on their way to moto.

moto accepts almost anything; AWS does not. For every request this module
decodes the call (EC2 and Query protocols: EC2, Auto Scaling, classic ELB,
ELBv2, RDS, IAM, STS; JSON 1.1: SSM; REST-XML: S3's bucket/key and headers),
finds the service from the SigV4 credential scope and the operation's input
shape in botocore's service models, and checks it against:

  - the model: required members, unknown parameters, string lengths,
    patterns, enums, integer ranges, list lengths, nested structures and lists
    (Query `X.member.N.Y`, EC2 `X.N.Y`, maps `X.entry.N.key`);
  - AWS rules the models do not carry (RULES below, each with the page of
    AWS's documentation it comes from).

A violation is a `Violation(service, operation, parameter, rule, message,
code)`. fault_proxy.py (--conformance LOG) answers it the way the service
answers a bad request and appends it to LOG as a JSON line; conformance.py is
also importable on its own (tests/peers/test_conformance.py).

Values of sensitive members (the model's `sensitive` trait, passwords,
secrets) never appear in a message.
"""
import base64
import json
import re
import threading
import urllib.parse
import xml.sax.saxutils

try:  # `regex` knows \p{L}, \p{Z}, \p{N} (botocore's patterns and AWS's tag rule)
    import regex as _re
except ImportError:  # pragma: no cover - scripts/setup installs it
    _re = None

import botocore.session

# The SigV4 signing name is not always botocore's service name.
SIGNING_TO_SERVICE = {
    "ec2": "ec2",
    "autoscaling": "autoscaling",
    "rds": "rds",
    "iam": "iam",
    "sts": "sts",
    "ssm": "ssm",
    "acm": "acm",
    "s3": "s3",
}
# classic ELB and ELBv2 share the signing name; the API version tells them apart.
ELB_VERSIONS = {"2012-06-01": "elb", "2015-12-01": "elbv2"}

CREDENTIAL_RE = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")


class Violation:
    __slots__ = ("service", "operation", "parameter", "rule", "message", "code")

    def __init__(self, service, operation, parameter, rule, message, code=None):
        self.service, self.operation, self.parameter = service, operation, parameter
        self.rule, self.message, self.code = rule, message, code

    def as_dict(self):
        return {
            "service": self.service,
            "operation": self.operation,
            "parameter": self.parameter,
            "rule": self.rule,
            "message": self.message,
            "code": self.code,
        }

    def __repr__(self):
        return f"Violation({self.service}.{self.operation} {self.parameter}: {self.rule}: {self.message})"


class Call:
    """One decoded request: service, operation, protocol and its parameters
    (flat for Query/EC2, a JSON value for JSON, a dict for S3)."""

    def __init__(self, service, operation, protocol, params, raw=None):
        self.service, self.operation, self.protocol = service, operation, protocol
        self.params = params
        self.raw = raw or {}

    def get(self, name, default=None):
        if isinstance(self.params, dict):
            return self.params.get(name, default)
        return default


# --------------------------------------------------------------------------
# Models (cached: loading a service model takes tens of milliseconds).

_session = None
_models = {}
_ops = {}
_patterns = {}
_model_lock = threading.Lock()


def service_model(name):
    global _session
    m = _models.get(name)
    if m is None:
        with _model_lock:
            if _session is None:
                _session = botocore.session.get_session()
            m = _models.get(name)
            if m is None:
                m = _session.get_service_model(name)
                _models[name] = m
    return m


def operation_model(service, operation):
    key = (service, operation)
    if key in _ops:
        return _ops[key]
    try:
        op = service_model(service).operation_model(operation)
    except Exception:
        op = None
    _ops[key] = op
    return op


def compile_pattern(p):
    """botocore's patterns are Java regexes, fully matched by AWS's servers.
    Surrogate-pair ranges (`\\uD800\\uDC00-\\uDBFF\\uDFFF`) mean the astral
    planes. Returns None when a pattern cannot be compiled here (skipped)."""
    if p in _patterns:
        return _patterns[p]
    src = p.replace("\\uD800\\uDC00-\\uDBFF\\uDFFF", "\\U00010000-\\U0010FFFF")
    try:
        rx = (_re or re).compile(src)
    except Exception:
        rx = None
    _patterns[p] = rx
    return rx


# --------------------------------------------------------------------------
# Decoding


def header(headers, name):
    name = name.lower()
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


def decode(method, path, headers, body):
    """Returns a Call, or None for a request this checker does not know."""
    auth = header(headers, "Authorization") or ""
    m = CREDENTIAL_RE.search(auth)
    if not m:
        return None
    signing = m.group(2)
    url = urllib.parse.urlsplit(path)
    if signing == "s3":
        return decode_s3(method, url, headers)
    ctype = (header(headers, "Content-Type") or "").lower()
    target = header(headers, "X-Amz-Target")
    if target:
        svc = SIGNING_TO_SERVICE.get(signing)
        if svc is None:
            return None
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            params = None
        return Call(svc, target.split(".", 1)[-1], "json", params)
    if method == "POST" and "x-www-form-urlencoded" in ctype:
        text = body.decode("utf-8", "replace")
    else:
        text = url.query
    pairs = urllib.parse.parse_qsl(text, keep_blank_values=True)
    params = {}
    for k, v in pairs:
        params[k] = v
    action = params.pop("Action", None)
    version = params.pop("Version", None)
    if not action:
        return None
    if signing == "elasticloadbalancing":
        svc = ELB_VERSIONS.get(version)
    else:
        svc = SIGNING_TO_SERVICE.get(signing)
    if svc is None:
        return None
    proto = "ec2" if svc == "ec2" else "query"
    return Call(svc, action, proto, params)


def decode_s3(method, url, headers):
    path = urllib.parse.unquote(url.path)
    parts = path.lstrip("/").split("/", 1)
    bucket = parts[0] or None
    key = parts[1] if len(parts) > 1 and parts[1] != "" else None
    query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
    op = s3_operation(method, bucket, key, query, headers)
    return Call("s3", op, "rest-xml", {"Bucket": bucket, "Key": key},
                raw={"query": query, "headers": headers, "method": method})


_s3_ops = None


def s3_operation(method, bucket, key, query, headers=None):
    """The S3 operation a REST request names: the operation whose method and
    URI shape match, whose literal query keys and required query and header
    members are all present, the most specific one first (`/{Bucket}?versioning` before
    `/{Bucket}`, CopyObject's `x-amz-copy-source` before PutObject)."""
    headers = headers or {}
    global _s3_ops
    if _s3_ops is None:
        ops = []
        model = service_model("s3")
        for name in model.operation_names:
            http = model.operation_model(name).http
            uri = http.get("requestUri", "/")
            upath, _, uq = uri.partition("?")
            level = 0 if upath == "/" else (2 if "{Key+}" in upath else 1)
            literals = {}
            for part in uq.split("&") if uq else []:
                k, _, v = part.partition("=")
                literals[k] = v or None
            shape = model.operation_model(name).input_shape
            req_headers, req_query = [], []
            for m in shape.required_members if shape else []:
                ser = shape.members[m].serialization
                if ser.get("location") == "header":
                    req_headers.append(ser.get("name", m))
                elif ser.get("location") == "querystring" and ser.get("name", m) not in literals:
                    req_query.append(ser.get("name", m))
            ops.append((http.get("method"), level, literals, req_headers, req_query, name))
        _s3_ops = ops
    level = 0 if not bucket else (2 if key else 1)
    best, best_n = None, (-1, -1)
    for m, lv, literals, req_headers, req_query, name in _s3_ops:
        if m != method or lv != level:
            continue
        if all(k in query and (v is None or query[k] == v) for k, v in literals.items()) \
                and all(header(headers, h) is not None for h in req_headers) \
                and all(q in query for q in req_query):
            n = (len(literals) + len(req_query), len(req_headers))
            if n > best_n:
                best, best_n = name, n
    return best or f"{method} {'/{Bucket}/{Key}' if key else '/{Bucket}' if bucket else '/'}"


# --------------------------------------------------------------------------
# Model checks


class Node:
    __slots__ = ("value", "children")

    def __init__(self):
        self.value = None
        self.children = {}


def tree(flat):
    root = Node()
    for k, v in flat.items():
        n = root
        for part in k.split("."):
            n = n.children.setdefault(part, Node())
        n.value = v
    return root


def sensitive(shape, name):
    low = name.lower()
    return bool(shape.metadata.get("sensitive")) or "password" in low or "secret" in low


def shown(value, shape, name):
    if sensitive(shape, name):
        return "(a sensitive value)"
    s = str(value)
    return repr(s if len(s) <= 64 else s[:61] + "...")


class ModelChecker:
    def __init__(self, call, out):
        self.call, self.out = call, out
        self.ec2 = call.protocol == "ec2"

    def bad(self, param, rule, message):
        self.out.append(Violation(self.call.service, self.call.operation, param, rule, message))

    def member_name(self, shape, name):
        ser = shape.serialization
        if self.ec2:
            if "queryName" in ser:
                return ser["queryName"]
            if "name" in ser:
                return ser["name"][0].upper() + ser["name"][1:]
            return name
        return ser.get("name", name)

    def check(self, shape, node, path, name):
        t = shape.type_name
        if t == "structure":
            self.structure(shape, node, path)
        elif t == "list":
            self.list(shape, node, path, name)
        elif t == "map":
            self.map(shape, node, path, name)
        else:
            for k in node.children:
                self.bad(f"{path}.{k}", "unknown-parameter", f"{path} is a {t}, not a structure or list")
            if node.value is not None:
                self.scalar(shape, node.value, path, name)

    def structure(self, shape, node, path):
        seen = set()
        for name, ms in shape.members.items():
            if ms.serialization.get("location") in ("header", "headers", "uri", "querystring"):
                continue
            sname = self.member_name(ms, name)
            seen.add(sname)
            child = node.children.get(sname)
            p = f"{path}.{sname}" if path else sname
            if child is None:
                if name in shape.required_members:
                    self.bad(p, "required", f"the required parameter {p} is missing")
                continue
            self.check(ms, child, p, name)
        for k in node.children:
            if k not in seen:
                p = f"{path}.{k}" if path else k
                self.bad(p, "unknown-parameter", f"{p} is not a parameter of {self.call.operation}")

    def items(self, shape, node, path):
        """(index, child) of a serialized list; unknown keys reported."""
        if node.value == "" and not node.children:
            return []
        container = node
        if not self.ec2 and not shape.serialization.get("flattened"):
            lname = shape.member.serialization.get("name", "member")
            container = node.children.get(lname)
            for k in node.children:
                if k != lname:
                    self.bad(f"{path}.{k}", "unknown-parameter", f"{path} is a list: {path}.{lname}.N expected")
            if container is None:
                return []
            path = f"{path}.{lname}"
        out = []
        for k, child in container.children.items():
            if not k.isdigit() or int(k) < 1:
                self.bad(f"{path}.{k}", "unknown-parameter", f"{path} is a list: numbered members expected")
                continue
            out.append((int(k), child, f"{path}.{k}"))
        return sorted(out, key=lambda x: x[0])

    def list(self, shape, node, path, name):
        items = self.items(shape, node, path)
        self.length(shape, len(items), path, "list-length", "members")
        for _, child, p in items:
            self.check(shape.member, child, p, name)

    def map(self, shape, node, path, name):
        container = node
        if not shape.serialization.get("flattened"):
            container = node.children.get("entry", Node())
            path = f"{path}.entry"
        kname = shape.key.serialization.get("name", "key")
        vname = shape.value.serialization.get("name", "value")
        n = 0
        for k, entry in container.children.items():
            n += 1
            p = f"{path}.{k}"
            for sub, sshape in ((kname, shape.key), (vname, shape.value)):
                c = entry.children.get(sub)
                if c is None:
                    self.bad(f"{p}.{sub}", "required", f"map entry {p} has no {sub}")
                else:
                    self.check(sshape, c, f"{p}.{sub}", name)
            for extra in entry.children:
                if extra not in (kname, vname):
                    self.bad(f"{p}.{extra}", "unknown-parameter", f"map entry {p} has no member {extra}")
        self.length(shape, n, path, "map-length", "entries")

    def length(self, shape, n, path, rule, what):
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
        if lo is not None and n < lo:
            self.bad(path, rule, f"{path} has {n} {what}; at least {lo} required")
        if hi is not None and n > hi:
            self.bad(path, rule, f"{path} has {n} {what}; at most {hi} allowed")

    def scalar(self, shape, value, path, name):
        t = shape.type_name
        meta = shape.metadata
        if t == "string":
            if not isinstance(value, str):
                self.bad(path, "type", f"{path} must be a string")
                return
            n = len(value)
            if meta.get("min") is not None and n < meta["min"]:
                self.bad(path, "string-length", f"{path} is {n} characters long; at least {meta['min']} required")
            if meta.get("max") is not None and n > meta["max"]:
                self.bad(path, "string-length", f"{path} is {n} characters long; at most {meta['max']} allowed")
            enum = meta.get("enum")
            if enum and value not in enum:
                self.bad(path, "enum", f"{path} = {shown(value, shape, name)} is not one of {', '.join(enum)}")
            pat = meta.get("pattern")
            if pat and not enum:
                rx = compile_pattern(pat)
                if rx is not None and not rx.fullmatch(value):
                    self.bad(path, "pattern", f"{path} = {shown(value, shape, name)} does not match {pat}")
        elif t in ("integer", "long"):
            try:
                v = int(value) if not isinstance(value, bool) else None
            except (TypeError, ValueError):
                v = None
            if v is None:
                self.bad(path, "type", f"{path} = {shown(value, shape, name)} is not an integer")
                return
            if meta.get("min") is not None and v < meta["min"]:
                self.bad(path, "range", f"{path} = {v} is below the minimum {meta['min']}")
            if meta.get("max") is not None and v > meta["max"]:
                self.bad(path, "range", f"{path} = {v} is above the maximum {meta['max']}")
        elif t == "boolean":
            if self.call.protocol == "json":
                ok = isinstance(value, bool)
            else:
                ok = value in ("true", "false")
            if not ok:
                self.bad(path, "type", f"{path} = {shown(value, shape, name)} is not a boolean")
        elif t in ("double", "float"):
            try:
                float(value)
            except (TypeError, ValueError):
                self.bad(path, "type", f"{path} = {shown(value, shape, name)} is not a number")
        elif t == "blob" and isinstance(value, str):
            try:
                base64.b64decode(value, validate=True)
            except Exception:
                self.bad(path, "type", f"{path} is not base64")

    # JSON protocol: values are already typed.
    def check_json(self, shape, value, path, name):
        t = shape.type_name
        if t == "structure":
            if not isinstance(value, dict):
                self.bad(path or "(body)", "type", f"{path or 'the body'} must be an object")
                return
            names = {}
            for mname, ms in shape.members.items():
                names[ms.serialization.get("name", mname)] = (mname, ms)
            for mname in shape.required_members:
                ms = shape.members[mname]
                if ms.serialization.get("name", mname) not in value:
                    p = f"{path}.{mname}" if path else mname
                    self.bad(p, "required", f"the required parameter {p} is missing")
            for k, v in value.items():
                p = f"{path}.{k}" if path else k
                if k not in names:
                    self.bad(p, "unknown-parameter", f"{p} is not a parameter of {self.call.operation}")
                    continue
                self.check_json(names[k][1], v, p, names[k][0])
        elif t == "list":
            if not isinstance(value, list):
                self.bad(path, "type", f"{path} must be a list")
                return
            self.length(shape, len(value), path, "list-length", "members")
            for i, v in enumerate(value):
                self.check_json(shape.member, v, f"{path}[{i}]", name)
        elif t == "map":
            if not isinstance(value, dict):
                self.bad(path, "type", f"{path} must be an object")
                return
            self.length(shape, len(value), path, "map-length", "entries")
            for k, v in value.items():
                self.scalar(shape.key, k, f"{path}.{k}", name)
                self.check_json(shape.value, v, f"{path}.{k}", name)
        elif t == "string":
            self.scalar(shape, value, path, name)
        elif t in ("integer", "long"):
            if not isinstance(value, int) or isinstance(value, bool):
                self.bad(path, "type", f"{path} must be an integer")
            else:
                self.scalar(shape, value, path, name)
        elif t == "boolean":
            self.scalar(shape, value, path, name)


def check_model(call, out):
    op = operation_model(call.service, call.operation)
    if op is None:
        out.append(Violation(call.service, call.operation, "Action", "unknown-operation",
                             f"{call.service} has no operation {call.operation}"))
        return
    shape = op.input_shape
    mc = ModelChecker(call, out)
    if call.protocol in ("query", "ec2"):
        root = tree(call.params)
        if shape is None:
            for k in root.children:
                mc.bad(k, "unknown-parameter", f"{k} is not a parameter of {call.operation}")
            return
        mc.structure(shape, root, "")
    elif call.protocol == "json":
        if shape is None:
            return
        if call.params is None:
            mc.bad("(body)", "type", "the body is not JSON")
            return
        mc.check_json(shape, call.params, "", "")
    elif call.protocol == "rest-xml" and shape is not None:
        check_rest(call, shape, mc)


def check_rest(call, shape, mc):
    """S3: the members bound to the URI, the query string and headers."""
    headers = call.raw["headers"]
    query = call.raw["query"]
    for name, ms in shape.members.items():
        loc = ms.serialization.get("location")
        sname = ms.serialization.get("name", name)
        if loc == "uri":
            value = call.params.get(name)
        elif loc == "header":
            value = header(headers, sname)
        elif loc == "querystring":
            value = query.get(sname)
        else:
            continue
        if value is None:
            if name in shape.required_members:
                mc.bad(sname, "required", f"the required parameter {name} ({loc} {sname}) is missing")
            continue
        if ms.type_name in ("string", "integer", "long", "boolean"):
            mc.scalar(ms, value, sname, name)


# --------------------------------------------------------------------------
# AWS rules the models do not carry. Each rule: (name, doc, services, ops, fn).
# fn(call, ctx) -> iterable of (parameter, message, code).

RULES = []


def rule(name, doc, service, operations=None):
    def wrap(fn):
        RULES.append((name, doc, service, set(operations) if operations else None, fn))
        return fn
    return wrap


def query_list(params, prefix, ec2=False):
    """Members of a serialized Query/EC2 list of structures:
    [{field: value}] from `prefix.member.N.field` (or `prefix.N.field`)."""
    lead = f"{prefix}." if ec2 else f"{prefix}.member."
    items = {}
    for k, v in params.items():
        if k.startswith(lead):
            rest = k[len(lead):]
            idx, _, field = rest.partition(".")
            if idx.isdigit():
                items.setdefault(int(idx), {})[field] = v
    return [items[i] for i in sorted(items)]


RDS_ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,62}")


def rds_identifier_problem(v):
    if not 1 <= len(v) <= 63:
        return f"is {len(v)} characters long; 1 to 63 allowed"
    if not v[0].isascii() or not v[0].isalpha():
        return "must begin with a letter"
    if not RDS_ID_RE.fullmatch(v):
        return "may contain only ASCII letters, digits and hyphens"
    if "--" in v:
        return "cannot contain two consecutive hyphens"
    if v.endswith("-"):
        return "cannot end with a hyphen"
    return None


@rule("rds-identifier",
      "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBInstance.html (DBInstanceIdentifier "
      "constraints: 1 to 63 letters, numbers, or hyphens; first character a letter; no trailing hyphen or two "
      "consecutive hyphens)",
      "rds", ["CreateDBInstance", "CreateDBInstanceReadReplica", "ModifyDBInstance", "RestoreDBInstanceFromDBSnapshot"])
def _rds_identifier(call, ctx):
    for p in ("DBInstanceIdentifier", "NewDBInstanceIdentifier"):
        if call.operation == "ModifyDBInstance" and p == "DBInstanceIdentifier":
            continue
        v = call.get(p)
        if v is not None:
            why = rds_identifier_problem(v)
            if why:
                yield p, f"The parameter {p} is not a valid identifier: {v!r} {why}.", "InvalidParameterValue"


@rule("rds-parameter-group-name",
      "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBParameterGroup.html (DBParameterGroupName: "
      "1 to 255 letters, numbers, or hyphens; first character a letter; can't end with a hyphen or contain two "
      "consecutive hyphens)",
      "rds", ["CreateDBParameterGroup"])
def _rds_pg_name(call, ctx):
    v = call.get("DBParameterGroupName")
    if v is None:
        return
    why = None
    if not 1 <= len(v) <= 255:
        why = f"is {len(v)} characters long; 1 to 255 allowed"
    elif not (v[0].isascii() and v[0].isalpha()):
        why = "must begin with a letter"
    elif not re.fullmatch(r"[A-Za-z0-9-]+", v):
        why = "may contain only letters, digits and hyphens"
    elif "--" in v or v.endswith("-"):
        why = "cannot end with a hyphen or contain two consecutive hyphens"
    if why:
        yield "DBParameterGroupName", f"The parameter DBParameterGroupName is not a valid identifier: {v!r} {why}.", \
            "InvalidParameterValue"


@rule("rds-subnet-group-name",
      "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBSubnetGroup.html (DBSubnetGroupName: "
      "no more than 255 letters, numbers, periods, underscores, spaces, or hyphens; must not be default)",
      "rds", ["CreateDBSubnetGroup"])
def _rds_subnet_group_name(call, ctx):
    v = call.get("DBSubnetGroupName")
    if v is None:
        return
    if len(v) > 255 or not re.fullmatch(r"[A-Za-z0-9._ -]+", v) or v.lower() == "default":
        yield "DBSubnetGroupName", f"The parameter DBSubnetGroupName is not a valid name: {v!r}.", \
            "InvalidParameterValue"


@rule("rds-replica-parameter-group",
      "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBInstanceReadReplica.html "
      "(DBParameterGroupName: \"Specifying a parameter group for this operation is only supported for MySQL DB "
      "instances for cross-Region read replicas, for Multi-AZ DB cluster read replica instances, for Db2 DB "
      "instances, and for Oracle DB instances\"; RDS for PostgreSQL answers InvalidParameterCombination)",
      "rds", ["CreateDBInstanceReadReplica"])
def _rds_replica_pg(call, ctx):
    if call.get("DBParameterGroupName") is None:
        return
    src = call.get("SourceDBInstanceIdentifier") or ""
    src_id = src.rsplit(":", 1)[-1]
    engine = ctx.rds_engine(src_id) if ctx else None
    if engine is None or not engine.startswith(("mysql", "oracle", "db2")):
        yield "DBParameterGroupName", (
            f"A DB parameter group cannot be specified for a read replica of a {engine or 'unknown-engine'} "
            f"DB instance ({src_id}): the replica uses its source's parameter group."), "InvalidParameterCombination"


# RDS for PostgreSQL: the oldest minor version of each major that can still be
# created. Since 2026-05-01 RDS refuses new instances on 14.14-14.17,
# 15.9-15.12, 16.5-16.8 and 17.1-17.4 (deprecation announced for 2026-05-31; see
# the release calendar,
# https://docs.aws.amazon.com/AmazonRDS/latest/PostgreSQLReleaseNotes/postgresql-release-calendar.html,
# and the "Deprecated versions" pages it links); older minors of the same major
# were deprecated before them (16.4 among them, as issue 10 found). Majors
# past standard support (13 and below) can still be created under Extended
# Support and are not listed. Update this table when RDS deprecates more.
RDS_MIN_CREATABLE = {
    "postgres": {"14": "14.18", "15": "15.13", "16": "16.9", "17": "17.5"},
}


def version_tuple(v):
    out = []
    for part in v.split("."):
        num = "".join(ch for ch in part if ch.isdigit())
        out.append(int(num) if num else 0)
        if not part.isdigit():
            break
    return tuple(out)


def not_creatable(engine, version):
    """The oldest creatable minor when `version` is older than it, else None."""
    table = RDS_MIN_CREATABLE.get(engine, {})
    major = version.split(".", 1)[0]
    floor = table.get(major)
    if floor and "." in version and version_tuple(version) < version_tuple(floor):
        return floor
    return None


@rule("rds-engine-version-creatable",
      "RDS for PostgreSQL release calendar and deprecation notices, "
      "https://docs.aws.amazon.com/AmazonRDS/latest/PostgreSQLReleaseNotes/postgresql-release-calendar.html "
      "(table RDS_MIN_CREATABLE in conformance.py: 16.5-16.8 etc. not creatable since 2026-05-01, 16.4 before)",
      "rds", ["CreateDBInstance"])
def _rds_engine_version(call, ctx):
    engine, version = call.get("Engine"), call.get("EngineVersion")
    if engine and version:
        floor = not_creatable(engine, version)
        if floor:
            yield "EngineVersion", f"Cannot find version {version} for {engine} (oldest creatable {floor})", \
                "InvalidParameterCombination"


RDS_PASSWORD_BAD = set("/'\"@ ")


@rule("rds-master-password",
      "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBInstance.html (MasterUserPassword, "
      "PostgreSQL: 8 to 128 printable ASCII characters except /, ', \", @ and space)",
      "rds", ["CreateDBInstance", "ModifyDBInstance"])
def _rds_password(call, ctx):
    v = call.get("MasterUserPassword")
    if v is None:
        return
    engine = call.get("Engine") or "postgres"
    if engine.startswith("postgres") and not (8 <= len(v) <= 128 and all(
            32 < ord(c) < 127 and c not in RDS_PASSWORD_BAD for c in v)):
        yield "MasterUserPassword", ("The parameter MasterUserPassword is not a valid password. Only printable "
                                     "ASCII characters besides '/', '@', '\"', ' ' may be used (8 to 128)."), \
            "InvalidParameterValue"


def elb_name_problem(v, what):
    if not 1 <= len(v) <= 32:
        return f"{what} {v!r} is {len(v)} characters long; at most 32 allowed"
    if not re.fullmatch(r"[A-Za-z0-9-]+", v):
        return f"{what} {v!r} may contain only alphanumeric characters and hyphens"
    if v.startswith("-") or v.endswith("-"):
        return f"{what} {v!r} cannot begin or end with a hyphen"
    return None


@rule("elb-name",
      "https://docs.aws.amazon.com/elasticloadbalancing/2012-06-01/APIReference/API_CreateLoadBalancer.html "
      "(LoadBalancerName: unique per region, at most 32 characters, only alphanumerics and hyphens, must not begin "
      "or end with a hyphen)",
      "elb", ["CreateLoadBalancer"])
def _elb_name(call, ctx):
    v = call.get("LoadBalancerName")
    if v is not None:
        why = elb_name_problem(v, "LoadBalancerName")
        if why:
            yield "LoadBalancerName", why, "ValidationError"


@rule("elbv2-name",
      "https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html and "
      "API_CreateTargetGroup.html (Name: at most 32 alphanumerics or hyphens, not beginning or ending with a "
      "hyphen; a load balancer's not beginning with internal-)",
      "elbv2", ["CreateLoadBalancer", "CreateTargetGroup"])
def _elbv2_name(call, ctx):
    v = call.get("Name")
    if v is not None:
        why = elb_name_problem(v, "Name")
        if not why and call.operation == "CreateLoadBalancer" and v.startswith("internal-"):
            why = f"Name {v!r} cannot begin with internal-"
        if why:
            yield "Name", why, "ValidationError"


TAG_CHARS = r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*"
_tag_rx = None


def tag_problems(tags, where):
    """AWS's tagging rules for ELB, RDS and Auto Scaling."""
    global _tag_rx
    if _tag_rx is None:
        _tag_rx = compile_pattern(TAG_CHARS)
    if len(tags) > 50:
        yield where, f"{len(tags)} tags; at most 50 allowed per resource"
    for i, t in enumerate(tags, 1):
        k, v = t.get("Key"), t.get("Value") or ""
        if k is None:
            continue
        if not 1 <= len(k) <= 128:
            yield f"{where}.{i}.Key", f"tag key {k[:40]!r} is {len(k)} characters long; 1 to 128 allowed"
        if len(v) > 256:
            yield f"{where}.{i}.Value", f"the value of tag {k!r} is {len(v)} characters long; at most 256 allowed"
        if k.lower().startswith("aws:"):
            yield f"{where}.{i}.Key", f"tag key {k!r}: the aws: prefix is reserved for AWS's use"
        if _tag_rx is not None:
            if not _tag_rx.fullmatch(k):
                yield f"{where}.{i}.Key", f"tag key {k!r} has characters outside {TAG_CHARS}"
            if not _tag_rx.fullmatch(v):
                yield f"{where}.{i}.Value", f"the value of tag {k!r}, {v!r}, has characters outside {TAG_CHARS}"


TAG_DOC = ("https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html (tag naming limits: key 1-128, "
           "value 0-256 Unicode characters, letters, numbers and spaces representable in UTF-8 plus _ . : / = + - @; "
           "at most 50 tags; aws: reserved), as enforced by ELB, RDS (API_Tag.html) and Auto Scaling "
           "(ec2/userguide/ec2-auto-scaling-tagging.html)")


@rule("tags", TAG_DOC, "elb", ["CreateLoadBalancer", "AddTags"])
@rule("tags", TAG_DOC, "elbv2", ["CreateLoadBalancer", "CreateTargetGroup", "AddTags"])
@rule("tags", TAG_DOC, "rds", ["CreateDBInstance", "CreateDBInstanceReadReplica", "AddTagsToResource",
                               "CreateDBSubnetGroup", "CreateDBParameterGroup"])
@rule("tags", TAG_DOC, "autoscaling", ["CreateAutoScalingGroup", "CreateOrUpdateTags"])
def _tags(call, ctx):
    # The list's member name comes from the model: RDS serializes `Tags.Tag.N.Key`,
    # the others `Tags.member.N.Key`.
    op = operation_model(call.service, call.operation)
    shape = op.input_shape.members.get("Tags") if op is not None else None
    if shape is None or shape.type_name != "list":
        return
    prefix = "Tags." + shape.member.serialization.get("name", "member")
    tags = query_list(call.params, prefix, ec2=True)
    code = "ValidationError" if call.service != "rds" else "InvalidParameterValue"
    for p, msg in tag_problems(tags, prefix):
        yield p, msg, code


@rule("launch-template-metadata-options",
      "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_LaunchTemplateInstanceMetadataOptionsRequest.html "
      "(HttpPutResponseHopLimit: 1 to 64; HttpTokens optional|required, HttpEndpoint enabled|disabled: checked by "
      "the model when present)",
      "ec2", ["CreateLaunchTemplate", "CreateLaunchTemplateVersion", "ModifyInstanceMetadataOptions", "RunInstances"])
def _lt_metadata(call, ctx):
    for k, v in call.params.items():
        if k.endswith("MetadataOptions.HttpPutResponseHopLimit") or k == "HttpPutResponseHopLimit":
            try:
                n = int(v)
            except ValueError:
                continue
            if not 1 <= n <= 64:
                yield k, f"{k} = {n}: the hop limit is 1 to 64", "InvalidParameterValue"


@rule("launch-configurations-new-accounts",
      "https://docs.aws.amazon.com/autoscaling/ec2/userguide/launch-configurations.html (\"accounts created on or "
      "after October 1, 2024 cannot create launch configurations\"); on only with Checker(new_account=True), "
      "fault_proxy.py --conformance-new-account",
      "autoscaling", ["CreateLaunchConfiguration"])
def _lc_new_accounts(call, ctx):
    if ctx is not None and ctx.new_account:
        yield "Action", ("The Launch Configuration creation operation is not available in your account. Use launch "
                         "templates to create configuration templates for your Auto Scaling groups."), \
            "UnsupportedOperation"


S3_IP_RE = re.compile(r"\d+\.\d+\.\d+\.\d+")


def bucket_problem(b):
    if not 3 <= len(b) <= 63:
        return f"is {len(b)} characters long; 3 to 63 allowed"
    if not re.fullmatch(r"[a-z0-9.-]+", b):
        return "may contain only lowercase letters, digits, dots and hyphens"
    if not (b[0].isalnum() and b[-1].isalnum()):
        return "must begin and end with a letter or digit"
    if ".." in b:
        return "cannot contain two adjacent periods"
    if S3_IP_RE.fullmatch(b):
        return "cannot be formatted as an IP address"
    for p in ("xn--", "sthree-", "amzn-s3-demo-"):
        if b.startswith(p):
            return f"cannot begin with {p}"
    for s in ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"):
        if b.endswith(s):
            return f"cannot end with {s}"
    return None


@rule("s3-bucket-name",
      "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html (general purpose buckets)",
      "s3", ["CreateBucket"])
def _s3_bucket(call, ctx):
    b = call.get("Bucket")
    if b is not None:
        why = bucket_problem(b)
        if why:
            yield "Bucket", f"The specified bucket is not valid: {b!r} {why}.", "InvalidBucketName"


@rule("s3-key-length",
      "https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html (a key is at most 1,024 bytes of UTF-8)",
      "s3")
def _s3_key(call, ctx):
    k = call.get("Key")
    if k is not None and len(k.encode("utf-8")) > 1024:
        yield "Key", f"The object key is {len(k.encode('utf-8'))} bytes long; at most 1024 allowed.", "KeyTooLongError"


@rule("s3-user-metadata-size",
      "https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingMetadata.html (user-defined metadata in a PUT "
      "header is at most 2 KB)",
      "s3", ["PutObject", "CreateMultipartUpload", "CopyObject"])
def _s3_meta(call, ctx):
    total = 0
    for k, v in call.raw["headers"].items():
        if k.lower().startswith("x-amz-meta-"):
            total += len(k[len("x-amz-meta-"):].encode()) + len(str(v).encode())
    if total > 2048:
        yield "x-amz-meta-*", f"user metadata is {total} bytes; at most 2048 allowed", "MetadataTooLarge"


def check_rules(call, ctx, out):
    for name, doc, service, ops, fn in RULES:
        if service != call.service or (ops is not None and call.operation not in ops):
            continue
        for param, message, code in fn(call, ctx) or ():
            out.append(Violation(call.service, call.operation, param, name, message, code))


# --------------------------------------------------------------------------
# Errors, as each service answers a bad request

DEFAULT_CODE = {"ec2": "InvalidParameterValue", "rds": "InvalidParameterValue", "s3": "InvalidArgument"}
RULE_CODE_EC2 = {"required": "MissingParameter", "unknown-parameter": "UnknownParameter"}


def error_code(v):
    if v.code:
        return v.code
    if v.service == "ec2":
        return RULE_CODE_EC2.get(v.rule, "InvalidParameterValue")
    if v.service in ("ssm", "acm"):
        return "ValidationException"
    if v.rule == "required" and v.service != "s3":
        return "MissingParameter" if v.service == "rds" else "ValidationError"
    return DEFAULT_CODE.get(v.service, "ValidationError")


def error_response(call, violations):
    """(status, content type, body) of the service's own answer to the first violation."""
    v = violations[0]
    code = error_code(v)
    if len(violations) == 1:
        msg = v.message
    else:
        msg = f"{len(violations)} validation errors detected: " + "; ".join(x.message for x in violations[:5])
    esc = xml.sax.saxutils.escape
    if call.protocol == "ec2":
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{esc(code)}</Code>"
                f"<Message>{esc(msg)}</Message></Error></Errors><RequestID>conformance-proxy</RequestID></Response>")
        return 400, "text/xml;charset=UTF-8", body.encode()
    if call.protocol == "json":
        body = json.dumps({"__type": code, "message": msg})
        return 400, "application/x-amz-json-1.1", body.encode()
    if call.protocol == "rest-xml":
        extra = f"<BucketName>{esc(call.get('Bucket') or '')}</BucketName>" if call.get("Bucket") else ""
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{esc(code)}</Code><Message>{esc(msg)}"
                f"</Message>{extra}<RequestId>conformance-proxy</RequestId></Error>")
        return 400, "application/xml", body.encode()
    body = (f"<ErrorResponse xmlns=\"https://{call.service}.amazonaws.com/doc/\"><Error><Type>Sender</Type>"
            f"<Code>{esc(code)}</Code><Message>{esc(msg)}</Message></Error>"
            f"<RequestId>conformance-proxy</RequestId></ErrorResponse>")
    return 400, "text/xml", body.encode()


# --------------------------------------------------------------------------


class Context:
    """What a rule needs to know beyond the request: RDS engines by instance
    identifier, remembered from CreateDBInstance calls that succeeded, else
    looked up with `lookup(headers, service, params) -> (status, xml bytes)`
    (headers: the request being checked, for its credentials and region)."""

    def __init__(self, lookup=None, new_account=False):
        self.lookup = lookup
        self.new_account = new_account
        self.engines = {}
        self.lock = threading.Lock()
        self.current = threading.local()

    def rds_engine(self, ident):
        with self.lock:
            e = self.engines.get(ident)
        if e is not None or self.lookup is None or not ident:
            return e
        import xml.etree.ElementTree as ET
        try:
            status, data = self.lookup(getattr(self.current, "headers", {}), "rds", {"Action": "DescribeDBInstances", "Version": "2014-10-31",
                                               "DBInstanceIdentifier": ident})
            if status != 200:
                return None
            root = ET.fromstring(data)
            for el in root.iter():
                if el.tag.rsplit("}", 1)[-1] == "Engine":
                    e = el.text
                    break
        except Exception:
            return None
        if e:
            with self.lock:
                self.engines[ident] = e
        return e

    def observe(self, call, status):
        """After the upstream answered `call` with `status`."""
        if status == 200 and call.service == "rds" and call.operation == "CreateDBInstance":
            ident, engine = call.get("DBInstanceIdentifier"), call.get("Engine")
            if ident and engine:
                with self.lock:
                    self.engines[ident] = engine


def check(call, ctx=None):
    out = []
    check_model(call, out)
    check_rules(call, ctx, out)
    return out


class Checker:
    """Thread-safe: one per proxy. `inspect` returns (call, violations)."""

    def __init__(self, log_path=None, lookup=None, new_account=False):
        self.ctx = Context(lookup, new_account)
        self.log_path = log_path
        self.log_lock = threading.Lock()

    def inspect(self, method, path, headers, body):
        call = decode(method, path, headers, body)
        if call is None:
            return None, []
        self.ctx.current.headers = headers
        violations = check(call, self.ctx)
        if violations and self.log_path:
            with self.log_lock, open(self.log_path, "a") as f:
                for v in violations:
                    d = v.as_dict()
                    d["code"] = error_code(v)  # the code the service answers with
                    f.write(json.dumps(d) + "\n")
        return call, violations

    def observe(self, call, status):
        if call is not None:
            self.ctx.observe(call, status)


def warm(services=("ec2", "autoscaling", "elb", "elbv2", "rds", "iam", "sts", "ssm", "s3")):
    """Load the models up front so the first requests are not slower."""
    for s in services:
        try:
            service_model(s)
        except Exception:
            pass
    s3_operation("GET", None, None, {})
