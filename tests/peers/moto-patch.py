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
