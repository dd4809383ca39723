#!/usr/bin/env python3
"""Fix moto (5.2.x) where it answers differently from AWS in a way that
blocks testing fabrs. Each patch is idempotent and does nothing on a moto
that already behaves or whose code has changed (it says so).

1. CreateLaunchTemplateVersion stores its UserData unparsed, so an auto
   scaling group launching from such a version fails with HTTP 500
   (AssertionError in LaunchTemplateVersion.user_data). CreateLaunchTemplate
   parses it; the patch makes CreateLaunchTemplateVersion do the same.
2. GetBucketVersioning answers with the root element
   `GetBucketVersioningResponse`; S3 answers `VersioningConfiguration`
   (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketVersioning.html),
   which is what the AWS SDKs read. The patch answers as S3 does.

3. moto serves only Amazon Linux's, ECS's and the global-infrastructure
   public parameters, and refuses PutParameter under /aws/ (as AWS does):
   Debian's and Canonical's image parameters (/aws/service/debian/...,
   /aws/service/canonical/...), which `ami: resolve:ssm:...` names, cannot
   exist. The patch loads, for every region, the parameters listed in the
   JSON file MOTO_SSM_PUBLIC_PARAMETERS names (tests/peers/
   moto-public-parameters.json: [{"Name": ..., "Value": ...}]), the first
   time a /aws/service/ name is looked up, as moto loads its own.

4. Every EC2 resource's tags (a tag filter, a response listing tags) are
   read with DescribeTags filtered by its id, which scans every tag of the
   account: a Describe call's time grows with the square of the account's
   size (1.1 s for DescribeSecurityGroups with tag filters at 218 groups),
   a cost of moto's, not of the call, that buried what issue 11's
   scale benchmark (benches/scale.sh) measures. The patch reads the tags of
   ids given literally (no wildcard) from the tag index by id; the answer is
   the same (a literal id's pattern matches only that id).

Usage: moto-patch.py SITE_PACKAGES_DIR
"""
import pathlib
import sys

site = pathlib.Path(sys.argv[1])


def patch(name, rel, marker, must_contain, old, new):
    path = site / rel
    text = path.read_text()
    if marker in text:
        print(f"moto-patch: {name}: already applied")
    elif text.count(old) != 1 or must_contain not in text:
        print(f"moto-patch: {name}: moto's code changed; not patched (check whether the bug is fixed)")
    else:
        path.write_text(text.replace(old, new, 1))
        print(f"moto-patch: {name}: applied")


# 1. Only the occurrence inside create_launch_template_version.
lt = site / "moto/ec2/responses/launch_templates.py"
lt_text = lt.read_text()
lt_marker = "# fabrs: parse the version's UserData"
lt_anchor = '''        template_data = self._get_param("LaunchTemplateData", {})
'''
if lt_marker in lt_text:
    print("moto-patch: launch template version user data: already applied")
elif "def create_launch_template_version" not in lt_text or lt_text.count(lt_anchor) < 1:
    print("moto-patch: launch template version user data: moto's code changed; not patched")
else:
    head, tail = lt_text.split("def create_launch_template_version", 1)
    if lt_anchor not in tail:
        print("moto-patch: launch template version user data: moto's code changed; not patched")
    else:
        fix = lt_anchor + f'''        {lt_marker} (as create_launch_template does)
        if "UserData" in template_data:
            template_data["UserData"] = parse_user_data(self._get_param("LaunchTemplateData.UserData"))
'''
        lt.write_text(head + "def create_launch_template_version" + tail.replace(lt_anchor, fix, 1))
        print("moto-patch: launch template version user data: applied")

# 2.
patch(
    "GetBucketVersioning root element",
    "moto/s3/responses.py",
    "# fabrs: answer VersioningConfiguration",
    "def get_bucket_versioning",
    '''        result = {"Status": versioning}
        self.data["Action"] = "GetBucketVersioning"
        return self.serialized(ActionResult(result))
''',
    '''        # fabrs: answer VersioningConfiguration, as S3 does
        status = f"<Status>{versioning}</Status>" if versioning else ""
        return 200, {}, (
            '<?xml version="1.0" encoding="UTF-8"?>\\n'
            '<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"{status}</VersioningConfiguration>"
        )
''',
)

# 3.
patch(
    "public image parameters",
    "moto/ssm/models.py",
    "# fabrs: public parameters from MOTO_SSM_PUBLIC_PARAMETERS",
    "def _load_latest_amis",
    """    def _check_loading_status(self, key: str) -> None:
        key = str(key or "")
""",
    """    def _check_loading_status(self, key: str) -> None:
        key = str(key or "")
        # fabrs: public parameters from MOTO_SSM_PUBLIC_PARAMETERS
        if key.startswith("/aws/service/") and not getattr(self, "fabrs_public_loaded", False):
            self.fabrs_public_loaded = True
            listed = os.environ.get("MOTO_SSM_PUBLIC_PARAMETERS")
            for param in json.loads(open(listed).read()) if listed else []:
                super().__getitem__(param["Name"]).append(
                    Parameter(
                        account_id=self.account_id,
                        name=param["Name"],
                        value=param["Value"],
                        parameter_type="String",
                        description=None,
                        allowed_pattern=None,
                        keyid=None,
                        last_modified_date=utcnow(),
                        version=1,
                        data_type="aws:ec2:image",
                    )
                )
""",
)

# 4.
patch(
    "tags of one resource read by id",
    "moto/ec2/models/tags.py",
    "# fabrs: literal ids read from the index",
    "def describe_tags",
    """        for resource_id, tags in self.tags.copy().items():
            for key, value in tags.items():
                add_result = False
""",
    """        # fabrs: literal ids read from the index, not by scanning every tag
        only_ids = filters is not None and list(filters) == ["resource-id"] and not any(
            ch in v for v in filters["resource-id"] for ch in "*?"
        )
        if only_ids:
            items = [(r, self.tags[r]) for r in dict.fromkeys(filters["resource-id"]) if r in self.tags]
        else:
            items = list(self.tags.copy().items())
        for resource_id, tags in items:
            for key, value in tags.items():
                add_result = False
""",
)
