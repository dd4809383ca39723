#!/usr/bin/env python3
"""A fault-injecting HTTP proxy between fabrs and a moto server.

Every request is forwarded to the upstream, except that, at random (seeded):
  --throttle P   answer with the API's own throttling error (EC2: 503
                 RequestLimitExceeded; query APIs: 400 Throttling; JSON APIs
                 such as SSM: 400 ThrottlingException; S3: 503 SlowDown)
  --error P      answer 500 InternalError (a 5xx the client must retry)
  --drop P       close the connection without answering
  --latency-ms N wait N ms before forwarding every request
  --send-twice A   forward every call of API action A twice and answer with
                   the second answer: as if a run killed with the call in
                   flight had sent it just before (repeatable).
  --deny-action A  answer every call of API action A the way AWS answers an
                 account that may not make it (CreateLaunchConfiguration:
                 400 UnsupportedOperation, as for accounts created after 2024-10-01)
  --sicken-revision R  make a revision's new instances never healthy: after a
                 SetDesiredCapacity / UpdateAutoScalingGroup(DesiredCapacity)
                 that launches instances while the group's launch
                 configuration name carries "-R-", stop those instances in
                 moto (moto's ELB then reports them OutOfService), before
                 answering: deterministic, no race with the caller's polling
  --elb-health-from FILE  answer the classic ELB's DescribeInstanceHealth
                 from real servers: FILE maps "instance-id URL" per line
                 (re-read on every call); a mapped instance is InService when
                 GET URL answers 200 (TLS not verified, 2 s), else
                 OutOfService; an unmapped one is OutOfService (no server
                 stands in for it yet: it is still booting). moto says
                 InService at once; this is how the boot test makes a deploy
                 wait for booted servers' own health.
  --trace FILE   append one JSON line per request answered: the operation,
                 when it arrived and when it was answered (monotonic
                 seconds), for counting round trips in series
                 (benches/series.py)
  --conformance LOG  check every request against AWS's own service models
                 (botocore) and the rules they do not carry (conformance.py);
                 answer a violation as the service would (400 ValidationError,
                 InvalidParameterValue, ...) and append it to LOG as a JSON line.
                 FABRS_TEST_CONFORMANCE_LOG=LOG in the environment does the same
                 for every proxy a test starts (FABRS_TEST_CONFORMANCE_MODE=report:
                 as with --conformance-report-only).
  --conformance-report-only  log violations but forward the request anyway
                 (to list every violation of a whole run, not just the first)
  --conformance-new-account  also apply the rules of accounts created since
                 2024-10-01 (no CreateLaunchConfiguration)
Where moto falls short of AWS in a way a client can see, the proxy does what
AWS does: the Tags of a CreateBucket request are put on the bucket before the
answer (moto ignores them; on AWS a bucket never exists without them).
The first --grace requests pass untouched. Statistics go to --stats FILE on
every request (JSON), so a test can assert that faults really happened.
Only ever listens on and forwards to 127.0.0.1.
"""
import argparse
import http.client
import http.server
import json
import os
import random
import re
import socket
import socketserver
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET

args = None
rng = None
lock = threading.Lock()
checker = None
stats = {"requests": 0, "throttled": 0, "errors": 0, "dropped": 0, "forwarded": 0, "denied": 0, "sickened": 0,
         "doubled": 0, "held_out_of_service": 0,
         "violations": 0, "checked": 0, "operations": {}, "in_flight": 0}


def record(key, by=1):
    with lock:
        stats[key] += by
        if args.stats:
            # Whole or not at all: a reader never sees a half-written file.
            tmp = f"{args.stats}.{threading.get_ident()}.tmp"
            with open(tmp, "w") as f:
                json.dump(stats, f)
            os.replace(tmp, args.stats)


def pick():
    with lock:
        stats["requests"] += 1
        n = stats["requests"]
        r = rng.random()
    if n <= args.grace:
        return None
    if r < args.drop:
        return "drop"
    r -= args.drop
    if r < args.throttle:
        return "throttle"
    r -= args.throttle
    if r < args.error:
        return "error"
    return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def setup(self):
        super().setup()
        # Answers go out whole (see reply): no Nagle wait for a delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def reply(self, status, reason, headers, data):
        """Status line, headers and body in one write."""
        self.send_response(status, reason)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self._headers_buffer.append(b"\r\n")
        self._headers_buffer.append(data)
        self.flush_headers()

    def handle_any(self):
        # in_flight: requests taken and not yet answered (a client killed
        # mid-call leaves its calls to finish here, as they would on AWS).
        record("in_flight")
        try:
            if args.trace:
                start = time.monotonic()
                try:
                    self.handle_request()
                finally:
                    trace(start, self.traced_op)
            else:
                self.handle_request()
        finally:
            record("in_flight", -1)

    def handle_request(self):
        self.traced_op = None
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        self.traced_op = (form.get("Action", [""])[0] or self.headers.get("X-Amz-Target")
                          or f"s3 {self.command} {urllib.parse.urlsplit(self.path).query.split('=')[0]}".rstrip())
        if form.get("Action", [""])[0] in (args.deny_action or []):
            record("denied")
            payload = ("<ErrorResponse><Error><Type>Sender</Type><Code>UnsupportedOperation</Code>"
                       "<Message>The Launch Configuration creation operation is not available in your account. "
                       "Use launch templates to create configuration templates for your Auto Scaling groups.</Message>"
                       "</Error><RequestId>fault-proxy</RequestId></ErrorResponse>").encode()
            self.reply(400, None, [("Content-Type", "text/xml")], payload)
            return
        call = None
        if checker is not None:
            call, violations = checker.inspect(self.command, self.path, dict(self.headers.items()), body)
            if call is not None:
                with lock:
                    stats["checked"] += 1
                    op = f"{call.service}.{call.operation}"
                    stats["operations"][op] = stats["operations"].get(op, 0) + 1
            if violations:
                with lock:
                    stats["violations"] += len(violations)
                if not args.conformance_report_only:
                    record("requests")
                    import conformance
                    status, ctype, payload = conformance.error_response(call, violations)
                    self.reply(status, None, [("Content-Type", ctype)], payload)
                    return
        fault = pick()
        if args.latency_ms:
            time.sleep(args.latency_ms / 1000.0)
        if fault == "drop":
            record("dropped")
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        if fault in ("throttle", "error") and self.headers.get("X-Amz-Target"):
            # A JSON-protocol API (SSM): its errors are JSON with __type.
            if fault == "throttle":
                record("throttled")
                code, status, msg = ("ThrottlingException", 400, "Rate exceeded")
            else:
                record("errors")
                code, status, msg = ("InternalServerError", 500, "An internal error has occurred")
            payload = json.dumps({"__type": code, "message": msg}).encode()
            self.reply(status, None, [("Content-Type", "application/x-amz-json-1.1")], payload)
            return
        auth = self.headers.get("Authorization") or ""
        if fault in ("throttle", "error") and "/s3/aws4_request" in auth:
            # S3 (REST-XML): an <Error> document at the root; throttling is 503 SlowDown.
            if fault == "throttle":
                record("throttled")
                code, status, msg = ("SlowDown", 503, "Please reduce your request rate.")
            else:
                record("errors")
                code, status, msg = ("InternalError", 500, "We encountered an internal error. Please try again.")
            payload = f"<Error><Code>{code}</Code><Message>{msg}</Message><RequestId>fault-proxy</RequestId></Error>"
            self.reply(status, None, [("Content-Type", "application/xml")], payload.encode())
            return
        if fault in ("throttle", "error"):
            ec2 = form.get("Version", [""])[0] == "2016-11-15"
            if fault == "throttle":
                record("throttled")
                code, status, msg = ("RequestLimitExceeded", 503, "Request limit exceeded.") if ec2 else ("Throttling", 400, "Rate exceeded")
            else:
                record("errors")
                code, status, msg = ("InternalError", 500, "An internal error has occurred")
            if ec2:
                payload = f"<Response><Errors><Error><Code>{code}</Code><Message>{msg}</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>"
            else:
                payload = f"<ErrorResponse><Error><Type>Receiver</Type><Code>{code}</Code><Message>{msg}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
            self.reply(status, None, [("Content-Type", "text/xml")], payload.encode())
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
        action = form.get("Action", [""])[0]
        sicken = args.sicken_revision and (
            action == "SetDesiredCapacity" or (action == "UpdateAutoScalingGroup" and "DesiredCapacity" in form))
        if sicken:
            group = form.get("AutoScalingGroupName", [""])[0]
            before, _ = describe_group(headers, group)
        if action and action in (args.send_twice or []):
            forward(self.command, self.path, body, headers)
            record("doubled")
        status, reason, resp_headers, data = forward(self.command, self.path, body, headers)
        if status == 200 and "/s3/aws4_request" in (self.headers.get("Authorization") or ""):
            create_time_bucket_tags(self.command, self.path, body, headers)
        if sicken and status == 200:
            after, lc = describe_group(headers, group)
            new = sorted(set(after) - set(before))
            if new and f"-{args.sicken_revision}-" in (lc or ""):
                stop_instances(headers, new)
                record("sickened")
        if args.elb_health_from and action == "DescribeInstanceHealth" and status == 200:
            data = real_instance_health(data)
        if checker is not None:
            checker.observe(call, status)
        record("forwarded")
        skip = ("transfer-encoding", "connection", "content-length", "server", "date")
        self.reply(status, reason, [(k, v) for k, v in resp_headers if k.lower() not in skip], data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any


def real_instance_health(data):
    urls = {}
    try:
        with open(args.elb_health_from) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    urls[parts[0]] = parts[1]
    except FileNotFoundError:
        pass
    import ssl
    import urllib.request
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def healthy(url):
        try:
            with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
                return r.status == 200
        except Exception:
            return False

    def member(block):
        iid = re.search(r"<InstanceId>([^<]*)</InstanceId>", block)
        if not iid:
            return block
        url = urls.get(iid.group(1))
        state = "InService" if url and healthy(url) else "OutOfService"
        if state == "OutOfService":
            record("held_out_of_service")
        why = "real health check" if url else "no server stands in for it yet"
        block = re.sub(r"<State>[^<]*</State>", f"<State>{state}</State>", block)
        return re.sub(r"<Description>[^<]*</Description>", f"<Description>{why}</Description>", block)

    text = re.sub(r"<member>.*?</member>", lambda m: member(m.group(0)), data.decode(), flags=re.S)
    return text.encode()


def trace(start, op):
    line = json.dumps({"op": op, "start": start, "end": time.monotonic()})
    with lock:
        with open(args.trace, "a") as f:
            f.write(line + "\n")


def create_time_bucket_tags(method, path, body, headers):
    """AWS applies the tags of a CreateBucket request (CreateBucketConfiguration
    Tags) with the bucket; moto ignores them. Put them on before the client
    hears back, so that, as on AWS, no bucket exists without its tags (a
    client killed right after CreateBucket leaves a bucket it can prove it owns)."""
    bucket = urllib.parse.urlsplit(path)
    # PUT /<bucket> or /<bucket>/ (the Rust SDK sends the slash), no query.
    name = bucket.path.strip("/")
    if method != "PUT" or bucket.query or not name or "/" in name or b"<Tags>" not in body:
        return
    try:
        root = strip_ns(ET.fromstring(body))
    except ET.ParseError:
        return
    tags = root.find("Tags")
    if tags is None:
        return
    tagging = ET.Element("Tagging")
    tagset = ET.SubElement(tagging, "TagSet")
    for t in tags.findall("Tag"):
        tag = ET.SubElement(tagset, "Tag")
        ET.SubElement(tag, "Key").text = t.findtext("Key")
        ET.SubElement(tag, "Value").text = t.findtext("Value") or ""
    payload = ET.tostring(tagging)
    h = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "x-amz-content-sha256", "content-md5")}
    h["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    status, _, _, data = forward("PUT", f"/{name}?tagging", payload, h)
    if status not in (200, 204):
        sys.stderr.write(f"fault_proxy: tagging the new bucket {name} failed: {status} {data[:200]!r}\n")


def forward(method, path, body, headers):
    up = urllib.parse.urlsplit(args.upstream)
    conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    out = (resp.status, resp.reason, resp.getheaders(), data)
    conn.close()
    return out


def query(headers, service, params):
    """An unsigned-again query call to moto (it checks no signatures outside
    IAM mode), routed to `service` by the credential scope."""
    h = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "x-amz-content-sha256")}
    auth = h.get("Authorization") or h.get("authorization") or ""
    auth = re.sub(r"/[a-z0-9-]+/aws4_request", f"/{service}/aws4_request", auth)
    h = {k: v for k, v in h.items() if k.lower() != "authorization"}
    h["Authorization"] = auth
    h["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
    body = urllib.parse.urlencode(params).encode()
    status, _, _, data = forward("POST", "/", body, h)
    return status, data


def strip_ns(root):
    for el in root.iter():
        if "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def describe_group(headers, group):
    import xml.etree.ElementTree as ET
    status, data = query(headers, "autoscaling", {
        "Action": "DescribeAutoScalingGroups", "Version": "2011-01-01",
        "AutoScalingGroupNames.member.1": group})
    if status != 200:
        return [], None
    root = strip_ns(ET.fromstring(data))
    g = root.find(".//AutoScalingGroups/member")
    if g is None:
        return [], None
    ids = [e.text for e in g.findall("./Instances/member/InstanceId")]
    lc = g.findtext("./LaunchConfigurationName")
    return ids, lc


def stop_instances(headers, ids):
    params = {"Action": "StopInstances", "Version": "2016-11-15"}
    for i, iid in enumerate(ids, 1):
        params[f"InstanceId.{i}"] = iid
    status, data = query(headers, "ec2", params)
    assert status == 200, data


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # A command's concurrent discovery opens many connections at once; with
    # the default backlog of 5 the overflow waits for a SYN retry (1 s).
    request_queue_size = 128


def venv_python():
    """The project venv's interpreter (botocore and regex live there)."""
    here = os.path.dirname(os.path.abspath(__file__))
    py = os.path.join(here, "..", "..", ".venv", "bin", "python")
    return py if os.path.exists(py) else None


def main():
    global args, rng
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--throttle", type=float, default=0.0)
    p.add_argument("--error", type=float, default=0.0)
    p.add_argument("--drop", type=float, default=0.0)
    p.add_argument("--latency-ms", type=int, default=0)
    p.add_argument("--grace", type=int, default=0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--stats")
    p.add_argument("--trace")
    p.add_argument("--elb-health-from")
    p.add_argument("--deny-action", action="append")
    p.add_argument("--send-twice", action="append")
    p.add_argument("--sicken-revision")
    p.add_argument("--conformance", metavar="LOG", default=os.environ.get("FABRS_TEST_CONFORMANCE_LOG") or None)
    p.add_argument("--conformance-report-only", action="store_true",
                   default=os.environ.get("FABRS_TEST_CONFORMANCE_MODE") == "report")
    p.add_argument("--conformance-new-account", action="store_true")
    args = p.parse_args()
    host = urllib.parse.urlsplit(args.upstream).hostname
    assert host == "127.0.0.1", "the proxy only forwards to 127.0.0.1"
    rng = random.Random(args.seed)
    if args.conformance:
        global checker
        py = venv_python()
        if py and os.path.realpath(sys.prefix) != os.path.realpath(os.path.join(os.path.dirname(py), "..")) \
                and not os.environ.get("FABRS_PROXY_REEXEC"):
            # Checked against the project venv's botocore, whatever python3 started us.
            os.environ["FABRS_PROXY_REEXEC"] = "1"
            os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import conformance
        checker = conformance.Checker(args.conformance, lookup=query, new_account=args.conformance_new_account)
    server = Server(("127.0.0.1", args.port), Handler)
    if checker is not None:
        # Models load (about 0.7 s) while the port already accepts; a request
        # that needs one before then waits for it.
        import conformance
        threading.Thread(target=conformance.warm, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
