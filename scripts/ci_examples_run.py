"""Run the `run:` steps of GitHub Actions workflows in order, as GitHub would.

Used by scripts/ci-examples (which sets up moto, the project and PATH). Each
workflow's jobs run in file order; per step: `uses:` steps are GitHub's part
(skipped), `run:` steps marked `ci-examples: skip` too; the rest run with
`bash --noprofile --norc -eo pipefail` (GitHub's bash), with the workflow's,
job's and step's `env:` (expressions filled in from the table below; an
unknown expression fails), GITHUB_OUTPUT / GITHUB_STEP_SUMMARY / GITHUB_PATH
files, and their `if:` conditions evaluated. Between workflows the scenario
moves on (the pull request merges; the AMI parameter moves). After each one,
checks that the example did what it says.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

WORK = os.environ["CI_EXAMPLES_WORK"]
SHA = os.environ["CI_EXAMPLES_SHA"]
NEW_AMI = "ami-0a1b2c3d4e5f60718"

VALUES = {
    "vars.AWS_REGION": "us-east-1",
    "vars.FABRS_PLANS_BUCKET": "myproject-ci-plans",
    "vars.FABRS_AMI_PARAMETER": "/fabrs-ci/ami",
    "vars.FABRS_PLAN_ROLE_ARN": "arn:aws:iam::123456789012:role/fabrs-plan",
    "vars.FABRS_DEPLOY_ROLE_ARN": "arn:aws:iam::123456789012:role/fabrs-deploy",
    "vars.FABRS_URL": "",
    "vars.FABRS_SHA256": "",
    "secrets.FABRS_SECRET_DB_PASSWORD": os.environ["FABRS_SECRET_DB_PASSWORD"],
    "secrets.FABRS_SECRET_CACHE_PASSWORD": os.environ["FABRS_SECRET_CACHE_PASSWORD"],
    "secrets.FABRS_SECRET_QUEUE_PASSWORD": os.environ["FABRS_SECRET_QUEUE_PASSWORD"],
    "github.token": "",
    "github.sha": SHA,
    "github.event.pull_request.number": "1",
}

# The human output (stderr) of each step, by (workflow, step name).
STDERR = {}

EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def fill(text, outputs):
    def one(m):
        e = m.group(1)
        s = re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", e)
        if s:
            return outputs.get(s.group(1), {}).get(s.group(2), "")
        if e not in VALUES:
            sys.exit(f"ci-examples: no value for the expression `{e}`")
        return VALUES[e]

    return EXPR.sub(one, str(text))


def condition(expr, outputs):
    """The `if:` forms the examples use: step outputs compared with ==/!=,
    joined by && and ||, and always()."""
    if expr is None:
        return True
    e = EXPR.sub(lambda m: m.group(1), str(expr))

    def out(m):
        return repr(outputs.get(m.group(1), {}).get(m.group(2), ""))

    e = re.sub(r"steps\.([\w-]+)\.outputs\.([\w-]+)", out, e)
    e = e.replace("always()", "True").replace("&&", " and ").replace("||", " or ")
    if re.search(r"[A-Za-z_]\w*\(", e):
        sys.exit(f"ci-examples: cannot evaluate `if: {expr}`")
    return bool(eval(e, {"__builtins__": {}}, {"True": True, "False": False}))


def map_instances():
    """Every instance moto runs is reached at the one local sshd."""
    ids = subprocess.run(
        ["aws", "ec2", "describe-instances", "--output", "text", "--query",
         "Reservations[].Instances[?State.Name=='running'].InstanceId"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    at = open(os.path.join(WORK, "ssh", "endpoints")).read().split()[1]
    with open(os.path.join(WORK, "endpoints"), "w") as f:
        for i in ids:
            f.write(f"{i} {at}\n")


def run_workflow(path):
    wf = yaml.safe_load(open(path))
    name = wf.get("name", path)
    ran = 0
    for job_id, job in wf["jobs"].items():
        temp = tempfile.mkdtemp(dir=WORK, prefix=f"{job_id}-")
        base = dict(os.environ)
        base.update({
            "GITHUB_SHA": SHA, "GITHUB_REPOSITORY": "example/project", "RUNNER_TEMP": temp,
            "GITHUB_STEP_SUMMARY": os.path.join(temp, "summary.md"), "CI": "true",
        })
        for scope in (wf.get("env") or {}, job.get("env") or {}):
            for k, v in scope.items():
                base[k] = fill(v, {})
        outputs = {}
        for n, step in enumerate(job["steps"]):
            label = step.get("name") or step.get("uses") or f"step {n}"
            if "uses" in step:
                print(f"ci-examples: {name} / {label}: GitHub's part, skipped")
                continue
            script = step["run"]
            if "ci-examples: skip" in script:
                print(f"ci-examples: {name} / {label}: skipped (GitHub only)")
                continue
            if not condition(step.get("if"), outputs):
                print(f"ci-examples: {name} / {label}: condition false")
                continue
            env = dict(base)
            for k, v in (step.get("env") or {}).items():
                env[k] = fill(v, outputs)
            out_file = os.path.join(temp, f"output-{n}")
            open(out_file, "w").close()
            env["GITHUB_OUTPUT"] = out_file
            env["GITHUB_PATH"] = os.path.join(temp, "path")
            map_instances()
            print(f"ci-examples: {name} / {label}: running", flush=True)
            r = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", fill(script, outputs)],
                               env=env, stderr=subprocess.PIPE, text=True)
            sys.stdout.flush()
            sys.stderr.write(r.stderr)
            sys.stderr.flush()
            STDERR[(name, label)] = r.stderr
            if r.returncode != 0:
                sys.exit(f"ci-examples: {name} / {label}: exit {r.returncode}")
            ran += 1
            if "id" in step:
                outputs[step["id"]] = dict(
                    line.split("=", 1) for line in open(out_file).read().splitlines() if "=" in line
                )
        yield job_id, temp, outputs, ran


def check(cond, message):
    if not cond:
        sys.exit(f"ci-examples: FAILED: {message}")
    print(f"ci-examples: ok: {message}")


def events(path):
    lines = [l for l in open(path).read().splitlines() if l.strip()]
    return [json.loads(l) for l in lines]


def main():
    plan_wf, deploy_wf, rotate_wf = sys.argv[1:4]
    checks = 0

    # 1. A pull request adds the environment: validate, plan, save the plan.
    for _, temp, outputs, _ in run_workflow(plan_wf):
        md = open(os.path.join(temp, "plan.md")).read()
        check(outputs["plan"]["status"] == "2", "the plan of an empty account has changes (exit 2)")
        check(md.startswith("**Plan: "), "the markdown plan starts with its summary line")
        check(len(md) < 65536, "the markdown plan fits a comment")
        checks += 3
    tree = subprocess.run(["git", "rev-parse", "HEAD^{tree}"], check=True, capture_output=True, text=True).stdout.strip()
    r = subprocess.run(["aws", "s3api", "head-object", "--bucket", VALUES["vars.FABRS_PLANS_BUCKET"],
                        "--key", f"plans/{tree}/staging.json"], capture_output=True)
    check(r.returncode == 0, "the reviewed plan is saved for the merge")
    checks += 1

    # 2. The merge: apply the reviewed plan, push the release, deploy it.
    for _, temp, _, _ in run_workflow(deploy_wf):
        ev = events(os.path.join(temp, "deploy-events.jsonl"))
        check(ev and ev[-1]["event"] == "result" and ev[-1]["outcome"] == "ok",
              "the deploy's last event is its successful result")
        check(any(e["event"] == "instance_healthy" for e in ev), "the deploy reports healthy new instances")
        human = [l[4:] for l in STDERR[("fabrs deploy", "Deploy")].splitlines() if l.startswith("==> ")]
        steps = [e["step"] for e in ev if e["event"] == "step_started"]
        check(steps and steps == human, "the deploy's step events are the human output's steps, in order")
        check([e["seq"] for e in ev] == list(range(1, len(ev) + 1)), "the events are numbered in order")
        check(ev[0]["event"] == "started", "the first event says what runs")
        launched = {e["instance"] for e in ev if e["event"] == "instance_launched"}
        healthy = {e["instance"] for e in ev if e["event"] == "instance_healthy"}
        check(launched and launched == healthy, "every instance launched became healthy")
        checks += 6
    # A stale reviewed plan is refused: the account changed since.
    r = subprocess.run(["fabrs", "create-env", "staging", "--plan", os.path.join(temp, "reviewed-plan.json")],
                       capture_output=True, text=True)
    check(r.returncode != 0 and "changed since the plan was made" in r.stderr,
          "create-env refuses the reviewed plan once it is stale")
    checks += 1

    # The user-data diff end to end: what moto holds (secret values in it)
    # against a new revision's render.
    r = subprocess.run(["fabrs", "plan", "staging", "--revision", "nextrev1", "--format", "markdown"],
                       capture_output=True, text=True)
    check(r.returncode == 0 and "+REFAPP_REVISION=nextrev1" in r.stdout and f"-REFAPP_REVISION={SHA}" in r.stdout,
          "the plan of a new revision shows the changed line of the app environment")
    secrets = [os.environ[k] for k in ("FABRS_SECRET_DB_PASSWORD", "FABRS_SECRET_CACHE_PASSWORD", "FABRS_SECRET_QUEUE_PASSWORD")]
    check("__secret_db_password__" in r.stdout and not any(v in r.stdout for v in secrets),
          "the observed user-data's secret values show as placeholders")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABRS_SECRET_")}
    r = subprocess.run(["fabrs", "plan", "staging", "--revision", "nextrev1"], capture_output=True, text=True, env=env)
    check(r.returncode == 0 and "user-data diff not shown" in r.stdout and not any(v in r.stdout for v in secrets),
          "without the secrets the current user-data is withheld")
    checks += 3

    # 3. The AMI parameter moves: the scheduled job rotates onto it.
    subprocess.run(["aws", "ssm", "put-parameter", "--name", "/fabrs-ci/ami", "--type", "String",
                    "--overwrite", "--value", NEW_AMI], check=True, capture_output=True)
    for _, temp, outputs, _ in run_workflow(rotate_wf):
        check(outputs["ami"].get("moved") == "true", "the rotation job saw the AMI move")
        ev = events(os.path.join(temp, "rotate-events.jsonl"))
        check(ev[-1]["event"] == "result" and ev[-1]["outcome"] == "ok", "the rotation succeeded")
        checks += 2
    # staging's groups use launch templates: the latest version of each is on the new AMI.
    for role in ("web", "worker"):
        ami = subprocess.run(["aws", "ec2", "describe-launch-template-versions", "--launch-template-name",
                              f"myproject-staging-{role}", "--versions", "$Latest", "--output", "text",
                              "--query", "LaunchTemplateVersions[].LaunchTemplateData.ImageId"],
                             check=True, capture_output=True, text=True).stdout.strip()
        check(ami == NEW_AMI, f"the {role} launch template's latest version is on the new AMI ({ami})")
    checks += 2
    # Nothing left to do once the parameter is where the servers are.
    for _, _, outputs, _ in run_workflow(rotate_wf):
        check(outputs["ami"].get("moved") == "false", "a second run finds nothing to rotate")
        checks += 1
    print(f"ci-examples: {checks} passed, 0 failed")


if __name__ == "__main__":
    main()
