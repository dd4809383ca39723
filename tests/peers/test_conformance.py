"""The conformance proxy catches what AWS refuses and moto accepts.

A moto server on a free 127.0.0.1 port, fault_proxy.py --conformance in front
of it. Good requests (sent by botocore, as an SDK sends them) are answered as
moto answers them; bad ones are answered 400 with the service's own error
format and code, logged with the rule that caught them, and never reach moto
(read back from moto directly).

    .venv/bin/python tests/peers/test_conformance.py      # ends with "N passed, N failed"
    .venv/bin/python -m pytest tests/peers/test_conformance.py
"""
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

import boto3
import botocore.config
import botocore.exceptions

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import conformance  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, what):
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start on port {port}")


def bin_path(name):
    p = os.path.join(ROOT, ".venv", "bin", name)
    return p if os.path.exists(p) else os.path.join(os.path.dirname(sys.executable), name)


class Peers:
    moto = proxy = None

    @classmethod
    def start(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.log = os.path.join(cls.tmp.name, "violations.jsonl")
        cls.moto_port, cls.proxy_port = free_port(), free_port()
        env = dict(os.environ, MOTO_EC2_LOAD_DEFAULT_AMIS="false")
        cls.moto = subprocess.Popen([bin_path("moto_server"), "-H", "127.0.0.1", "-p", str(cls.moto_port)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        wait_port(cls.moto_port, cls.moto, "moto")
        env = {k: v for k, v in os.environ.items() if k != "FABRS_TEST_CONFORMANCE_LOG"}
        cls.proxy = subprocess.Popen([sys.executable, os.path.join(HERE, "fault_proxy.py"),
                                      "--port", str(cls.proxy_port),
                                      "--upstream", f"http://127.0.0.1:{cls.moto_port}",
                                      "--conformance", cls.log], env=env)
        wait_port(cls.proxy_port, cls.proxy, "the proxy")

    @classmethod
    def stop(cls):
        for p in (cls.proxy, cls.moto):
            if p is not None:
                p.kill()
                p.wait()
        cls.tmp.cleanup()


def client(service, port, validate=False):
    return boto3.client(
        service, endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=botocore.config.Config(parameter_validation=validate, retries={"max_attempts": 1},
                                      s3={"addressing_style": "path"}))


class ConformanceProxy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        Peers.start()

    @classmethod
    def tearDownClass(cls):
        Peers.stop()

    # ---- helpers
    def via_proxy(self, service):
        return client(service, Peers.proxy_port)

    def direct(self, service):
        return client(service, Peers.moto_port)

    def log_lines(self):
        try:
            with open(Peers.log) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def refused(self, fn, code, rule, parameter=None):
        """fn() must fail with `code`, and the log must gain a line of `rule`."""
        before = len(self.log_lines())
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            fn()
        err = cm.exception.response["Error"]
        self.assertEqual(err["Code"], code, err)
        self.assertEqual(cm.exception.response["ResponseMetadata"]["HTTPStatusCode"], 400)
        new = self.log_lines()[before:]
        self.assertIn(rule, [v["rule"] for v in new], new)
        if parameter:
            self.assertIn(parameter, [v["parameter"] for v in new if v["rule"] == rule], new)
        return err, new

    def raw(self, signing, params, region="us-east-1"):
        """A Query/EC2 request botocore would not build (unknown parameters)."""
        body = urllib.parse.urlencode(params).encode()
        conn = http.client.HTTPConnection("127.0.0.1", Peers.proxy_port, timeout=30)
        conn.request("POST", "/", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Authorization": f"AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/{signing}/aws4_request, "
                             "SignedHeaders=host, Signature=00"})
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, data.decode()

    # ---- good requests pass and are answered as moto answers
    def test_good_requests_pass(self):
        before = len(self.log_lines())
        ec2 = self.via_proxy("ec2")
        vpcs = ec2.describe_vpcs()["Vpcs"]
        self.assertEqual(vpcs, self.direct("ec2").describe_vpcs()["Vpcs"])
        lt = ec2.create_launch_template(
            LaunchTemplateName="good-web", LaunchTemplateData={
                "ImageId": "ami-12345678", "InstanceType": "t3.small",
                "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 2, "HttpEndpoint": "enabled"},
                "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "fabrs:role", "Value": "web"}]}]})
        self.assertEqual(lt["LaunchTemplate"]["LaunchTemplateName"], "good-web")
        elb = self.via_proxy("elb")
        name = "a" * 32
        elb.create_load_balancer(LoadBalancerName=name, Listeners=[
            {"Protocol": "HTTP", "LoadBalancerPort": 80, "InstanceProtocol": "HTTP", "InstancePort": 80}],
            AvailabilityZones=["us-east-1a"], Tags=[{"Key": "fabrs:project", "Value": "shop eu/1 @x"}])
        got = self.direct("elb").describe_load_balancers(LoadBalancerNames=[name])["LoadBalancerDescriptions"]
        self.assertEqual(got[0]["LoadBalancerName"], name)
        rds = self.via_proxy("rds")
        rds.create_db_instance(DBInstanceIdentifier="good-db", DBInstanceClass="db.t3.micro", Engine="postgres",
                               EngineVersion="16.9", MasterUsername="app", MasterUserPassword="Secret-pass1",
                               AllocatedStorage=20, Tags=[{"Key": "env", "Value": "staging"}])
        rds.create_db_instance_read_replica(DBInstanceIdentifier="good-db-replica",
                                            SourceDBInstanceIdentifier="good-db")
        ids = [d["DBInstanceIdentifier"] for d in self.direct("rds").describe_db_instances()["DBInstances"]]
        self.assertIn("good-db-replica", ids)
        s3 = self.via_proxy("s3")
        s3.create_bucket(Bucket="myproject-staging-artifacts")
        s3.put_object(Bucket="myproject-staging-artifacts", Key="releases/r1/refapp.tar.gz", Body=b"x",
                      ServerSideEncryption="AES256")
        self.assertEqual(self.direct("s3").get_object(Bucket="myproject-staging-artifacts",
                                                      Key="releases/r1/refapp.tar.gz")["Body"].read(), b"x")
        ssm = self.via_proxy("ssm")
        ssm.put_parameter(Name="/myproject/staging/db_password", Value="s3cret-value", Type="SecureString")
        iam = self.via_proxy("iam")
        iam.create_role(RoleName="myproject-staging-web", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                   "Principal": {"Service": "ec2.amazonaws.com"}}]}))
        self.via_proxy("sts").get_caller_identity()
        self.via_proxy("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=["nothing"])
        self.via_proxy("elbv2").describe_load_balancers()
        self.assertEqual(self.log_lines()[before:], [])

    # ---- bad requests are refused with the right rule
    def test_missing_required(self):
        rds = self.via_proxy("rds")
        self.refused(lambda: rds.create_db_instance(DBInstanceIdentifier="no-class", Engine="postgres"),
                     "MissingParameter", "required", "DBInstanceClass")
        ids = [d["DBInstanceIdentifier"] for d in self.direct("rds").describe_db_instances()["DBInstances"]]
        self.assertNotIn("no-class", ids)

    def test_too_long(self):
        iam = self.via_proxy("iam")
        self.refused(lambda: iam.create_role(RoleName="r" * 65, AssumeRolePolicyDocument="{}"),
                     "ValidationError", "string-length", "RoleName")

    def test_pattern(self):
        iam = self.via_proxy("iam")
        self.refused(lambda: iam.create_role(RoleName="R&D", AssumeRolePolicyDocument="{}"),
                     "ValidationError", "pattern", "RoleName")

    def test_bad_enum(self):
        ec2 = self.via_proxy("ec2")
        self.refused(lambda: ec2.create_launch_template(LaunchTemplateName="bad-enum", LaunchTemplateData={
            "ImageId": "ami-12345678", "MetadataOptions": {"HttpTokens": "sometimes"}}),
            "InvalidParameterValue", "enum", "LaunchTemplateData.MetadataOptions.HttpTokens")
        ssm = self.via_proxy("ssm")
        self.refused(lambda: ssm.put_parameter(Name="/p/e/x", Value="v", Type="Secret"),
                     "ValidationException", "enum", "Type")

    def test_hop_limit(self):
        ec2 = self.via_proxy("ec2")
        self.refused(lambda: ec2.create_launch_template(LaunchTemplateName="bad-hops", LaunchTemplateData={
            "ImageId": "ami-12345678", "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 65}}),
            "InvalidParameterValue", "launch-template-metadata-options")

    def test_unknown_parameter(self):
        status, body = self.raw("elasticloadbalancing", {
            "Action": "DescribeLoadBalancers", "Version": "2012-06-01", "LoadBalancerNamez.member.1": "x"})
        self.assertEqual(status, 400, body)
        self.assertIn("<Code>ValidationError</Code>", body)
        self.assertIn("unknown-parameter", [v["rule"] for v in self.log_lines()])
        status, body = self.raw("ec2", {"Action": "DescribeVpcs", "Version": "2016-11-15", "VpcIds.1": "vpc-1"})
        self.assertEqual(status, 400, body)
        self.assertIn("<Code>UnknownParameter</Code>", body)
        self.assertIn("<Response><Errors>", body)
        # The right spelling passes.
        status, body = self.raw("ec2", {"Action": "DescribeVpcs", "Version": "2016-11-15", "VpcId.1": "vpc-1"})
        self.assertNotIn("UnknownParameter", body)

    def test_nested_list_members(self):
        """Query lists `X.member.N.Y`: a bad member deep in a list is found."""
        status, body = self.raw("autoscaling", {
            "Action": "CreateOrUpdateTags", "Version": "2011-01-01",
            "Tags.member.1.ResourceId": "g", "Tags.member.1.ResourceType": "auto-scaling-group",
            "Tags.member.1.Key": "k", "Tags.member.1.Value": "v", "Tags.member.1.Colour": "red"})
        self.assertEqual(status, 400, body)
        self.assertIn({"rule": "unknown-parameter", "parameter": "Tags.member.1.Colour"},
                      [{"rule": v["rule"], "parameter": v["parameter"]} for v in self.log_lines()])

    def test_rds_replica_with_parameter_group(self):
        rds = self.via_proxy("rds")
        rds.create_db_instance(DBInstanceIdentifier="pg-master", DBInstanceClass="db.t3.micro", Engine="postgres",
                               MasterUsername="app", MasterUserPassword="Secret-pass1", AllocatedStorage=20)
        rds.create_db_parameter_group(DBParameterGroupName="pg-replica-params", DBParameterGroupFamily="postgres16",
                                      Description="replica")
        err, _ = self.refused(lambda: rds.create_db_instance_read_replica(
            DBInstanceIdentifier="pg-master-replica", SourceDBInstanceIdentifier="pg-master",
            DBParameterGroupName="pg-replica-params"),
            "InvalidParameterCombination", "rds-replica-parameter-group", "DBParameterGroupName")
        self.assertIn("postgres", err["Message"])
        ids = [d["DBInstanceIdentifier"] for d in self.direct("rds").describe_db_instances()["DBInstances"]]
        self.assertNotIn("pg-master-replica", ids)

    def test_rds_replica_engine_looked_up_in_moto(self):
        """A source the proxy never saw created: its engine comes from moto."""
        self.direct("rds").create_db_instance(
            DBInstanceIdentifier="pg-unseen", DBInstanceClass="db.t3.micro", Engine="postgres",
            MasterUsername="app", MasterUserPassword="Secret-pass1", AllocatedStorage=20)
        self.direct("rds").create_db_instance(
            DBInstanceIdentifier="mysql-unseen", DBInstanceClass="db.t3.micro", Engine="mysql",
            MasterUsername="app", MasterUserPassword="Secret-pass1", AllocatedStorage=20)
        self.direct("rds").create_db_parameter_group(DBParameterGroupName="mysql-params",
                                                     DBParameterGroupFamily="mysql8.0", Description="m")
        rds = self.via_proxy("rds")
        self.refused(lambda: rds.create_db_instance_read_replica(
            DBInstanceIdentifier="pg-unseen-replica", SourceDBInstanceIdentifier="pg-unseen",
            DBParameterGroupName="default.postgres16"),
            "InvalidParameterCombination", "rds-replica-parameter-group")
        # MySQL takes one (cross-Region replicas); the rule is PostgreSQL's, not a blanket refusal.
        rds.create_db_instance_read_replica(DBInstanceIdentifier="mysql-unseen-replica",
                                            SourceDBInstanceIdentifier="mysql-unseen",
                                            DBParameterGroupName="mysql-params")

    def test_rds_identifier_double_hyphen(self):
        rds = self.via_proxy("rds")
        for ident in ("shop--eu-staging-db", "shop-eu-", "1shop", "x" * 64):
            self.refused(lambda: rds.create_db_instance(
                DBInstanceIdentifier=ident, DBInstanceClass="db.t3.micro", Engine="postgres",
                MasterUsername="app", MasterUserPassword="Secret-pass1", AllocatedStorage=20),
                "InvalidParameterValue", "rds-identifier", "DBInstanceIdentifier")

    def test_rds_engine_version_not_creatable(self):
        rds = self.via_proxy("rds")
        self.refused(lambda: rds.create_db_instance(
            DBInstanceIdentifier="old-version", DBInstanceClass="db.t3.micro", Engine="postgres",
            EngineVersion="16.4", MasterUsername="app", MasterUserPassword="Secret-pass1", AllocatedStorage=20),
            "InvalidParameterCombination", "rds-engine-version-creatable", "EngineVersion")

    def test_rds_password_never_echoed(self):
        rds = self.via_proxy("rds")
        err, new = self.refused(lambda: rds.create_db_instance(
            DBInstanceIdentifier="bad-password", DBInstanceClass="db.t3.micro", Engine="postgres",
            MasterUsername="app", MasterUserPassword="has@sign-1", AllocatedStorage=20),
            "InvalidParameterValue", "rds-master-password")
        self.assertNotIn("has@sign-1", err["Message"])
        self.assertNotIn("has@sign-1", json.dumps(new))

    def test_elb_name_33_characters(self):
        elb = self.via_proxy("elb")
        self.refused(lambda: elb.create_load_balancer(LoadBalancerName="a" * 33, Listeners=[
            {"Protocol": "HTTP", "LoadBalancerPort": 80, "InstanceProtocol": "HTTP", "InstancePort": 80}],
            AvailabilityZones=["us-east-1a"]), "ValidationError", "elb-name", "LoadBalancerName")
        self.assertEqual([d["LoadBalancerName"] for d in
                          self.direct("elb").describe_load_balancers()["LoadBalancerDescriptions"]
                          if d["LoadBalancerName"] == "a" * 33], [])

    def test_bad_tag_value(self):
        elb = self.via_proxy("elb")
        self.refused(lambda: elb.create_load_balancer(LoadBalancerName="tagged", Listeners=[
            {"Protocol": "HTTP", "LoadBalancerPort": 80, "InstanceProtocol": "HTTP", "InstancePort": 80}],
            AvailabilityZones=["us-east-1a"], Tags=[{"Key": "team", "Value": "R&D (photos) #42"}]),
            "ValidationError", "tags", "Tags.member.1.Value")
        rds = self.via_proxy("rds")
        self.refused(lambda: rds.add_tags_to_resource(
            ResourceName="arn:aws:rds:us-east-1:123456789012:db:good-db",
            Tags=[{"Key": "aws:owner", "Value": "x"}]), "InvalidParameterValue", "tags", "Tags.Tag.1.Key")
        asg = self.via_proxy("autoscaling")
        self.refused(lambda: asg.create_or_update_tags(Tags=[
            {"ResourceId": "g", "ResourceType": "auto-scaling-group", "Key": "k", "Value": "a#b",
             "PropagateAtLaunch": True}]), "ValidationError", "tags", "Tags.member.1.Value")

    def test_s3_bucket_name(self):
        s3 = self.via_proxy("s3")
        for bad in ("My-Bucket", "ab", "b" * 64, "a..b", "192.168.1.1", "x-s3alias-"):
            self.refused(lambda: s3.create_bucket(Bucket=bad), "InvalidBucketName", "s3-bucket-name", "Bucket")

    def test_s3_header_enum(self):
        s3 = self.via_proxy("s3")
        s3.create_bucket(Bucket="myproject-headers")
        self.refused(lambda: s3.put_object(Bucket="myproject-headers", Key="k", Body=b"x",
                                           ServerSideEncryption="ROT13"),
                     "InvalidArgument", "enum", "x-amz-server-side-encryption")


class Units(unittest.TestCase):
    """The decoder and rules on their own (no server)."""

    def call(self, service, op, params, protocol="query"):
        return conformance.Call(service, op, protocol, params)

    def test_decode_scope_and_version(self):
        auth = {"Authorization": "AWS4-HMAC-SHA256 Credential=AK/20260101/eu-west-1/elasticloadbalancing/"
                                 "aws4_request, SignedHeaders=host, Signature=0",
                "Content-Type": "application/x-www-form-urlencoded"}
        c = conformance.decode("POST", "/", auth, b"Action=DescribeTargetGroups&Version=2015-12-01")
        self.assertEqual((c.service, c.operation), ("elbv2", "DescribeTargetGroups"))
        c = conformance.decode("POST", "/", auth, b"Action=DescribeLoadBalancers&Version=2012-06-01")
        self.assertEqual((c.service, c.operation), ("elb", "DescribeLoadBalancers"))
        self.assertIsNone(conformance.decode("POST", "/", {}, b"Action=X"))

    def test_s3_operation_most_specific(self):
        self.assertEqual(conformance.s3_operation("PUT", "b", None, {}), "CreateBucket")
        self.assertEqual(conformance.s3_operation("PUT", "b", None, {"versioning": ""}), "PutBucketVersioning")
        self.assertEqual(conformance.s3_operation("GET", "b", None, {"list-type": "2"}), "ListObjectsV2")
        self.assertEqual(conformance.s3_operation("PUT", "b", "k/x", {}), "PutObject")
        self.assertEqual(conformance.s3_operation("PUT", "b", "k/x", {}, {"x-amz-copy-source": "a/b"}), "CopyObject")
        self.assertEqual(conformance.s3_operation("DELETE", "b", "k/x", {"x-id": "DeleteObject"}), "DeleteObject")
        self.assertEqual(conformance.s3_operation("DELETE", "b", "k/x", {"uploadId": "u1"}), "AbortMultipartUpload")
        self.assertEqual(conformance.s3_operation("PUT", "b", "k/x", {"partNumber": "1", "uploadId": "u"}), "UploadPart")

    def test_ec2_nested(self):
        out = conformance.check(self.call("ec2", "RunInstances", {
            "MinCount": "1", "MaxCount": "1", "TagSpecification.1.ResourceType": "instance",
            "TagSpecification.1.Tag.1.Key": "a", "TagSpecification.1.Tag.1.Valeu": "b"}, "ec2"))
        self.assertEqual([(v.rule, v.parameter) for v in out],
                         [("unknown-parameter", "TagSpecification.1.Tag.1.Valeu")])

    def test_integer_range_and_list_length(self):
        out = conformance.check(self.call("ssm", "GetParametersByPath", {"Path": "/p/e/", "MaxResults": 11}, "json"))
        self.assertEqual([v.rule for v in out], ["range"])
        out = conformance.check(self.call("elbv2", "CreateTargetGroup", {"Name": "t", "Port": "70000"}))
        self.assertEqual([v.rule for v in out], ["range"])
        names = {f"LoadBalancerNames.member.{i}": f"lb{i}" for i in range(1, 22)}
        out = conformance.check(self.call("elb", "DescribeTags", names))
        self.assertEqual([v.rule for v in out], ["list-length"])
        del names["LoadBalancerNames.member.21"]
        self.assertEqual(conformance.check(self.call("elb", "DescribeTags", names)), [])

    def test_tag_rule_accepts_unicode_letters(self):
        ok = list(conformance.tag_problems([{"Key": "équipe", "Value": "Zürich ünïcode 42 _.:/=+-@"}], "Tags"))
        self.assertEqual(ok, [])
        bad = list(conformance.tag_problems([{"Key": "k", "Value": "x" * 257}] + [{"Key": f"k{i}", "Value": ""}
                                                                                    for i in range(50)], "Tags"))
        self.assertEqual(len(bad), 2)

    def test_launch_configurations_only_for_new_accounts(self):
        call = self.call("autoscaling", "CreateLaunchConfiguration", {
            "LaunchConfigurationName": "lc", "ImageId": "ami-1", "InstanceType": "t3.small"})
        self.assertEqual(conformance.check(call, conformance.Context()), [])
        out = conformance.check(call, conformance.Context(new_account=True))
        self.assertEqual([(v.rule, v.code) for v in out],
                         [("launch-configurations-new-accounts", "UnsupportedOperation")])

    def test_engine_versions(self):
        for v in ("16.4", "16.8", "15.7", "17.4"):
            self.assertTrue(conformance.not_creatable("postgres", v), v)
        for v in ("16", "16.9", "16.10", "17.5", "13.20", "15.13"):
            self.assertIsNone(conformance.not_creatable("postgres", v), v)

    def test_every_rule_names_its_source(self):
        for name, doc, service, ops, fn in conformance.RULES:
            self.assertTrue(doc.strip(), name)


def main():
    suite = unittest.TestSuite()
    loader = unittest.TestLoader()
    suite.addTests(loader.loadTestsFromTestCase(Units))
    suite.addTests(loader.loadTestsFromTestCase(ConformanceProxy))
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors)
    passed = result.testsRun - failed - len(result.skipped)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed or result.testsRun == 0 else 0)


if __name__ == "__main__":
    main()
