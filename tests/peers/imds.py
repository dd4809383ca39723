"""An EC2 instance-metadata stand-in for the boot test (tests/peers/boot-peer).

Listens on 169.254.169.254:80 inside the boot test's private network namespace
(the address exists only there). IMDSv2 only, as fabrs's instances require:
PUT /latest/api/token first, then GETs with X-aws-ec2-metadata-token; a GET
without a valid token is 401, as on EC2 with HttpTokens=required.

Instances are told apart by their source address: DIR/instances has one line
per booted container, `IP INSTANCE_ID ROLE [INSTANCE_ROLE]`. The instance
role's credentials are minted by moto's STS (AssumeRole on the role's ARN), so
whatever the container does with them is checked by moto like any caller.
"""

import argparse
import datetime
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

ACCOUNT = "123456789012"
REGION = "us-east-1"


class State:
    def __init__(self, instances_file, moto):
        self.instances_file = instances_file
        self.moto = moto
        self.tokens = {}  # token -> expiry (epoch seconds)
        self.lock = threading.Lock()

    def instance(self, ip):
        try:
            with open(self.instances_file) as f:
                for line in f:
                    parts = line.split()
                    if parts and parts[0] == ip:
                        return {
                            "ip": parts[0],
                            "id": parts[1],
                            "role": parts[2],
                            "profile": parts[3] if len(parts) > 3 else None,
                        }
        except FileNotFoundError:
            pass
        return None

    def credentials(self, role_name, instance_id):
        def client(service):
            return boto3.client(
                service,
                endpoint_url=self.moto,
                region_name=REGION,
                aws_access_key_id="imds-stand-in",
                aws_secret_access_key="imds-stand-in",
            )

        sts = client("sts")
        # The role's ARN holds its path (fabrs makes roles under
        # /fabrs/<project>/<environment>/); IAM says what it is.
        iam = client("iam")
        try:
            arn = iam.get_role(RoleName=role_name)["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            arn = f"arn:aws:iam::{ACCOUNT}:role/{role_name}"
        out = sts.assume_role(
            RoleArn=arn,
            RoleSessionName=instance_id,
            DurationSeconds=3600,
        )["Credentials"]
        now = datetime.datetime.now(datetime.timezone.utc)
        return {
            "Code": "Success",
            "LastUpdated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Type": "AWS-HMAC",
            "AccessKeyId": out["AccessKeyId"],
            "SecretAccessKey": out["SecretAccessKey"],
            "Token": out["SessionToken"],
            "Expiration": out["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


def handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, code, body, ctype="text/plain"):
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self):
            if self.path != "/latest/api/token":
                return self.reply(404, "not found")
            if self.headers.get("X-Forwarded-For"):
                return self.reply(403, "forbidden")
            try:
                ttl = int(self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", ""))
            except ValueError:
                return self.reply(400, "missing or invalid X-aws-ec2-metadata-token-ttl-seconds")
            if not 1 <= ttl <= 21600:
                return self.reply(400, "ttl out of range")
            token = secrets.token_urlsafe(32)
            with state.lock:
                state.tokens[token] = time.time() + ttl
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("X-aws-ec2-metadata-token-ttl-seconds", str(ttl))
            self.send_header("Content-Length", str(len(token)))
            self.end_headers()
            self.wfile.write(token.encode())

        def do_GET(self):
            token = self.headers.get("X-aws-ec2-metadata-token", "")
            with state.lock:
                ok = state.tokens.get(token, 0) > time.time()
            if not ok:
                return self.reply(401, "Unauthorized")
            inst = state.instance(self.client_address[0])
            if inst is None:
                return self.reply(404, "unknown instance")
            path = self.path.rstrip("/") if self.path != "/latest/meta-data/iam/security-credentials/" else self.path
            md = "/latest/meta-data"
            simple = {
                f"{md}/local-ipv4": inst["ip"],
                f"{md}/instance-id": inst["id"],
                f"{md}/hostname": "ip-" + inst["ip"].replace(".", "-"),
                f"{md}/local-hostname": "ip-" + inst["ip"].replace(".", "-"),
                f"{md}/placement/region": REGION,
                f"{md}/placement/availability-zone": REGION + "a",
            }
            if path in simple:
                return self.reply(200, simple[path])
            if path == "/latest/dynamic/instance-identity/document":
                doc = {
                    "accountId": ACCOUNT,
                    "region": REGION,
                    "availabilityZone": REGION + "a",
                    "instanceId": inst["id"],
                    "privateIp": inst["ip"],
                }
                return self.reply(200, json.dumps(doc), "application/json")
            creds = f"{md}/iam/security-credentials"
            if path in (creds, creds + "/"):
                if not inst["profile"]:
                    return self.reply(404, "no instance profile")
                return self.reply(200, inst["profile"])
            if path.startswith(creds + "/"):
                name = path[len(creds) + 1 :]
                if not inst["profile"] or name != inst["profile"]:
                    return self.reply(404, "not found")
                try:
                    body = json.dumps(state.credentials(name, inst["id"]))
                except Exception as e:  # moto refused: say so, as a failed lookup
                    return self.reply(500, f"cannot mint credentials: {e}")
                return self.reply(200, body, "application/json")
            return self.reply(404, "not found")

        def log_message(self, fmt, *args):
            print("%s %s" % (self.client_address[0], fmt % args), flush=True)

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--moto", required=True)
    p.add_argument("--instances", required=True)
    p.add_argument("--listen", default="169.254.169.254")
    p.add_argument("--port", type=int, default=80)
    a = p.parse_args()
    state = State(a.instances, a.moto)
    ThreadingHTTPServer((a.listen, a.port), handler(state)).serve_forever()


if __name__ == "__main__":
    main()
