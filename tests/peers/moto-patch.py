#!/usr/bin/env python3
"""Fix one moto crash that blocks testing launch-template deploys.

moto (5.2.x) stores the UserData of CreateLaunchTemplateVersion unparsed, so
an auto scaling group launching from such a version fails with HTTP 500
(AssertionError in LaunchTemplateVersion.user_data). CreateLaunchTemplate
parses it; this makes CreateLaunchTemplateVersion do the same. Idempotent;
does nothing on a moto that already parses it or whose code has changed.
Usage: moto-patch.py SITE_PACKAGES_DIR
"""
import pathlib
import sys

path = pathlib.Path(sys.argv[1]) / "moto/ec2/responses/launch_templates.py"
text = path.read_text()
marker = "# fabrs: parse the version's UserData"
anchor = '''        template_data = self._get_param("LaunchTemplateData", {})
'''
if marker in text:
    print("moto-patch: already applied")
elif text.count(anchor) != 1 or "def create_launch_template_version" not in text:
    print("moto-patch: moto's code changed; not patched (check whether the bug is fixed)")
else:
    fix = anchor + f'''        {marker} (as create_launch_template does)
        if "UserData" in template_data:
            template_data["UserData"] = parse_user_data(self._get_param("LaunchTemplateData.UserData"))
'''
    # Only the occurrence inside create_launch_template_version.
    head, tail = text.split("def create_launch_template_version", 1)
    tail = tail.replace(anchor, fix, 1)
    path.write_text(head + "def create_launch_template_version" + tail)
    print("moto-patch: applied")
