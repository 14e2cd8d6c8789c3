"""The production SAM template (template.yaml), proven offline.

- cfn-lint validates the template as written (SAM resource schemas, Globals
  merged) and the CloudFormation that AWS's own SAM translator
  (aws-sam-translator, the library `sam deploy` and the CloudFormation
  transform use) makes of it, with no errors.
- Every Handler / CodeUri / ContentUri points at code that exists, and
  every function directory is deployed.
- Every environment variable a function's code can read (its app.py and
  the layer modules it imports, found by scanning the source, not from a
  list) is set for that function, or deliberately not set and explained.
- Every file in events/ matches a route or a schedule of the template.
- IAM statements are scoped: no "*" resource for events, secrets or queues,
  and each role holds only what its function uses.
- The issue's requirements (TLS, security groups, migration resource,
  alarms on metrics the code really emits, outputs) are checked on the
  template itself.
- Both values of ApiType (REST API, HTTP API) are checked on the template
  as CloudFormation would deploy it with that value (conditions evaluated,
  Fn::If resolved): linted, one API answering with every route, its
  throttling, access logs and stage, the alarm on its metrics, and the
  same IAM either way.
"""

from __future__ import annotations

import ast
import json
import re
from datetime import date
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "template.yaml"
LAYER = REPO / "layers" / "shared"
EVENTS = REPO / "events"
SCHEMAS = EVENTS / "schemas"

# The functions the issue asks for: directory under functions/ -> route
# (None: not behind the API).
EXPECTED_FUNCTIONS = {
    "register": ("POST", "/registry/register"),
    "heartbeat": ("POST", "/registry/heartbeat"),
    "update_card": ("POST", "/registry/update-card"),
    "deregister": ("POST", "/registry/deregister"),
    "discover": ("GET", "/registry/discover/{id}"),
    "peers": ("GET", "/registry/{id}/peers"),
    "check_access": ("POST", "/registry/check-access"),
    "admin_workspaces": ("GET", "/admin/workspaces"),
    "admin_workspace": ("GET", "/admin/workspaces/{id}"),
    "admin_events": ("GET", "/admin/events"),
    "admin_summary": ("GET", "/admin/summary"),
    "liveness_sweep": None,
    "migrate": None,
}

# Environment variables the code reads that the template deliberately does
# not set, each with its reason. Anything else the code reads must be set.
NOT_SET_IN_AWS = {
    # Local runs and tests only. In AWS the DSN is built from the Secrets
    # Manager secret (DATABASE_SECRET_ARN, registry/dbsecret.py), so no
    # password is ever in a function's configuration.
    "DATABASE_URL",
    # Legacy SaaS switch, consulted only when MOLECULE_DEPLOY_MODE is unset;
    # the template always sets MOLECULE_DEPLOY_MODE (parameter SaasMode).
    "MOLECULE_ORG_ID",
}
# Set by the Lambda runtime itself (AWS_REGION, AWS_LAMBDA_FUNCTION_NAME,
# credentials); a template may not set most of them.
RUNTIME_PREFIXES = ("AWS_", "_X_AMZN", "LAMBDA_")
# Set in the template for a library, not read by our code.
READ_BY_LIBRARIES = {"POWERTOOLS_LOG_LEVEL"}  # aws_lambda_powertools.Logger

# Declared EMPTY only so `sam local invoke --env-vars events/env.json` can
# set them (SAM overrides nothing the template does not declare). Empty is
# unset to registry.settings and to botocore, so in AWS the DSN still comes
# from the secret and boto3 resolves its own endpoints.
EMPTY_FOR_SAM_LOCAL = {"DATABASE_URL", "AWS_ENDPOINT_URL"}

# cfn-lint regions: the template must be valid where people deploy it.
LINT_REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"]


# ---------------------------------------------------------------- helpers



@pytest.fixture(scope="module")
def resources(sam) -> dict:
    return sam["Resources"]


def _of_type(resources: dict, kind: str) -> dict:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


@pytest.fixture(scope="module")
def functions(sam) -> dict:
    """Every AWS::Serverless::Function with the Globals merged in, as SAM does."""
    from cfnlint.template.transforms._sam_globals import merge_globals

    merged = merge_globals(json.loads(json.dumps(sam)))
    return {name: r["Properties"] for name, r in _of_type(merged["Resources"], "AWS::Serverless::Function").items()}


def _by_dir(functions: dict) -> dict:
    return {Path(props["CodeUri"]).name: (name, props) for name, props in functions.items()}


def _refs(value) -> set[str]:
    """Every resource or parameter a value refers to (Ref, GetAtt, ${...}),
    pseudo parameters (AWS::Region, AWS::NoValue...) left out."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref":
                found.add(item)
            elif key == "Fn::GetAtt":
                found.add(item[0] if isinstance(item, list) else item.split(".")[0])
            elif key == "Fn::Sub":
                text, names = (item[0], item[1]) if isinstance(item, list) else (item, {})
                for placeholder in re.findall(r"\$\{([^}!]+)\}", text):
                    if placeholder in names:
                        found |= _refs(names[placeholder])
                    else:
                        found.add(placeholder.split(".")[0])
            else:
                found |= _refs(item)
    elif isinstance(value, list):
        for item in value:
            found |= _refs(item)
    return {name for name in found if not name.startswith("AWS::")}


@pytest.fixture(scope="module")
def translated(sam) -> dict:
    """The CloudFormation AWS's SAM translator makes of the template, offline.

    CodeUri/ContentUri are replaced by S3 locations, as `sam package` does
    (test_code_locations checks the local paths first).
    """
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    template = json.loads(json.dumps(sam))
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            props["CodeUri"] = f"s3://artifacts/{name}.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = f"s3://artifacts/{name}.zip"
    pseudo = {"AWS::Region": "us-east-1", "AWS::Partition": "aws", "AWS::AccountId": "123456789012", "AWS::StackName": "registry"}
    # No managed policy is referred to by name, so no IAM lookup is needed.
    return Translator(managed_policy_map={}, sam_parser=Parser()).translate(sam_template=template, parameter_values=pseudo)


# ---------------------------------------------------------------- cfn-lint


def _lint(path: Path) -> list:
    from cfnlint.api import ManualArgs, lint_file

    return lint_file(path, ManualArgs(regions=LINT_REGIONS))


def test_cfn_lint_finds_nothing_in_the_template():
    """No error and no warning: nothing is silenced in the template as written."""
    matches = _lint(TEMPLATE)
    assert [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches] == []


def test_cfn_lint_finds_no_error_in_the_translated_template(translated, tmp_path):
    out = tmp_path / "translated.json"
    out.write_text(json.dumps(translated, indent=1, default=str))
    matches = _lint(out)
    errors = [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches if m.rule.id.startswith("E")]
    assert errors == []
    # One warning is accepted, and only where it is expected: W1020 ("Fn::Sub
    # isn't needed") on the layer's name, because the offline translator
    # resolves ${Stage} to the parameter's default while keeping the Sub.
    # In CloudFormation the transform resolves it with the deployed value.
    warnings = [(m.rule.id, _resource_at(out, m.linenumber)) for m in matches if not m.rule.id.startswith("E")]
    assert all(rule == "W1020" and resource.startswith("SharedLayer") for rule, resource in warnings), warnings


def _resource_at(path: Path, line: int) -> str:
    """The logical id of the resource a line of the translated JSON is in."""
    current = "?"
    for number, text in enumerate(path.read_text().splitlines(), 1):
        found = re.match(r'^  "(\w+)": \{$', text)
        if found:
            current = found.group(1)
        if number >= line:
            return current
    return current


def test_translation_produces_the_resources_sam_promises(translated):
    kinds = {r["Type"] for r in translated["Resources"].values()}
    assert {"AWS::Lambda::Function", "AWS::Lambda::LayerVersion", "AWS::ApiGateway::RestApi", "AWS::ApiGateway::Stage"} <= kinds
    assert {"AWS::ApiGatewayV2::Api", "AWS::ApiGatewayV2::Stage"} <= kinds
    assert "AWS::Scheduler::Schedule" in kinds and "AWS::Lambda::EventInvokeConfig" in kinds
    assert not any(kind.startswith("AWS::Serverless::") for kind in kinds)


# ---------------------------------------------------------------- code


def test_every_function_directory_is_deployed(functions):
    deployed = set(_by_dir(functions))
    on_disk = {p.parent.name for p in (REPO / "functions").glob("*/app.py")}
    assert set(EXPECTED_FUNCTIONS) <= deployed, f"missing from the template: {set(EXPECTED_FUNCTIONS) - deployed}"
    assert on_disk == deployed, f"in functions/ but not deployed: {on_disk - deployed}; deployed without code: {deployed - on_disk}"


@pytest.mark.parametrize("directory", sorted(EXPECTED_FUNCTIONS))
def test_handler_and_code_uri_point_at_code(functions, directory):
    by_dir = _by_dir(functions)
    assert directory in by_dir, f"functions/{directory} is not in the template"
    _, props = by_dir[directory]
    code = REPO / props["CodeUri"]
    assert code.is_dir(), f"CodeUri {props['CodeUri']} does not exist"
    module, _, handler = props["Handler"].rpartition(".")
    source = code / f"{module.replace('.', '/')}.py"
    assert source.is_file(), f"{props['Handler']}: {source} does not exist"
    tree = ast.parse(source.read_text())
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert handler in defined, f"{source} defines no {handler}()"
    # SAM's python builder runs pip on requirements.txt; the dependencies
    # themselves come from the layer.
    assert (code / "requirements.txt").is_file()


def test_layer_content_uri_and_build(sam, resources, functions):
    layers = _of_type(resources, "AWS::Serverless::LayerVersion")
    assert set(layers) == {"SharedLayer"}
    layer = layers["SharedLayer"]
    content = REPO / layer["Properties"]["ContentUri"]
    assert (content / "registry" / "__init__.py").is_file() and (content / "requirements.txt").is_file()
    assert list((content / "registry" / "migrations").glob("*.sql")), "the migrations ship in the layer"
    runtime = sam["Globals"]["Function"]["Runtime"]
    # layers/shared/Makefile installs requirements.lock and precompiles
    # (tests/test_built_artifacts.py builds and runs it).
    assert layer["Metadata"]["BuildMethod"] == "makefile" and (content / "Makefile").is_file()
    assert layer["Properties"]["CompatibleRuntimes"] == [runtime]
    # One architecture for the layer's wheels and the functions: the parameter.
    assert layer["Metadata"]["BuildArchitecture"] == {"Ref": "Architecture"}
    assert layer["Properties"]["CompatibleArchitectures"] == [{"Ref": "Architecture"}]
    assert sam["Globals"]["Function"]["Architectures"] == [{"Ref": "Architecture"}]
    for name, props in functions.items():
        assert {"Ref": "SharedLayer"} in props["Layers"], name


def test_runtime_is_supported_python_on_arm64(sam, functions):
    from cfnlint.data import AdditionalSpecs
    from cfnlint.helpers import load_resource

    lifecycle = load_resource(AdditionalSpecs, "LmbdRuntimeLifecycle.json")
    for name, props in functions.items():
        runtime = props["Runtime"]
        assert re.fullmatch(r"python3\.1[1-9]", runtime), (name, runtime)
        assert date.fromisoformat(lifecycle[runtime]["deprecated"]) > date.today(), f"{runtime} is deprecated"
        assert props["Architectures"] == [{"Ref": "Architecture"}], name
        assert props["Tracing"] == "Active", name
        assert isinstance(props["MemorySize"], int) and isinstance(props["Timeout"], int), name
    # Every function sends its logs to a log group with a retention.
    for name, props in functions.items():
        group = props["LoggingConfig"]["LogGroup"]["Ref"]
        assert sam["Resources"][group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name


# ---------------------------------------------------------------- environment

_READS = re.compile(
    r"""(?:\bos\.environ\.get\(|\bos\.getenv\(|\bos\.environ\[|\benviron\.get\(|\benviron\[|\b_int\(|\b_bool\()\s*["']([A-Z_][A-Z0-9_]*)["']"""
    # registry.settings.VARIABLES: an entry with a field is read by settings
    # itself; one without (field None) is read by the module it names, which
    # the scan reads on its own.
    r"""|\bVariable\(\s*["']([A-Z_][A-Z0-9_]*)["'],\s*["']"""
)


def _env_reads(path: Path) -> set[str]:
    return {name for match in _READS.findall(path.read_text()) for name in match if name}


def _layer_imports(path: Path) -> set[str]:
    """The registry modules a file imports (anywhere in it, lazy imports too)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {a.name.split(".")[1] for a in node.names if a.name.startswith("registry.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "registry":
            if node.module == "registry":
                modules |= {a.name for a in node.names}
            else:
                modules.add(node.module.split(".")[1])
    return {m for m in modules if (LAYER / "registry" / f"{m}.py").is_file()}


def _reads_of_function(directory: str) -> set[str]:
    app = REPO / "functions" / directory / "app.py"
    reads, seen, todo = _env_reads(app), set(), _layer_imports(app)
    while todo:
        module = todo.pop()
        seen.add(module)
        path = LAYER / "registry" / f"{module}.py"
        reads |= _env_reads(path)
        todo |= _layer_imports(path) - seen
    return reads


def test_scanner_sees_what_the_code_reads():
    """The scan is the test's foundation: prove it finds known reads."""
    found = _env_reads(LAYER / "registry" / "settings.py") | _env_reads(LAYER / "registry" / "observability.py")
    assert {
        "DATABASE_URL",
        "REDIS_URL",
        "EVENT_BUS_NAME",
        "LIVENESS_TTL_SECONDS",
        "PUBLISH_HEARTBEAT_EVENTS",
        "MOLECULE_DEPLOY_MODE",
    } <= found
    assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"} <= found
    assert {"DATABASE_SECRET_ARN", "DATABASE_HOST", "DATABASE_NAME"} <= _env_reads(LAYER / "registry" / "dbsecret.py")
    assert "settings" in _layer_imports(REPO / "functions" / "heartbeat" / "app.py") or "api" in _layer_imports(
        REPO / "functions" / "heartbeat" / "app.py"
    )
    assert "DATABASE_SECRET_ARN" in _reads_of_function("migrate")


@pytest.mark.parametrize("directory", sorted(EXPECTED_FUNCTIONS))
def test_every_variable_the_code_reads_is_set(functions, directory):
    _, props = _by_dir(functions)[directory]
    variables = props["Environment"]["Variables"]
    missing = {
        name
        for name in _reads_of_function(directory)
        if name not in variables and name not in NOT_SET_IN_AWS and not name.startswith(RUNTIME_PREFIXES)
    }
    assert not missing, f"functions/{directory} reads {sorted(missing)}, which the template does not set"


def test_every_variable_the_template_sets_is_read(functions):
    """A misspelt name in the template would otherwise go unnoticed."""
    read = set()
    for directory in _by_dir(functions):
        read |= _reads_of_function(directory)
    for name, props in functions.items():
        unread = set(props["Environment"]["Variables"]) - read - READ_BY_LIBRARIES - EMPTY_FOR_SAM_LOCAL
        assert not unread, f"{name} sets {sorted(unread)}, which no code reads"


def test_no_credentials_in_the_environment(functions, resources):
    for name, props in functions.items():
        variables = props["Environment"]["Variables"]
        for empty in EMPTY_FOR_SAM_LOCAL:
            assert variables.get(empty, "") == "", f"{name}: {empty} must stay empty in AWS (the DSN comes from the secret)"
        assert not [v for v in variables if "PASSWORD" in v or v.endswith("_TOKEN")], name
        assert "{{resolve:secretsmanager" not in json.dumps(variables), f"{name} resolves a secret into its environment"
        assert _refs(variables["DATABASE_SECRET_ARN"]) == {"DatabaseSecret", "ExistingDatabaseSecretArn"}
        assert _refs(variables["DATABASE_HOST"]) == {"DatabaseProxy", "ExistingDatabaseProxyEndpoint"}
        # TLS to the cache: rediss://.
        assert variables["REDIS_URL"]["Fn::Sub"].startswith("rediss://${Cache.Endpoint.Address}:")
        assert variables["EVENT_BUS_NAME"] == {"Ref": "EventBus"}


# ---------------------------------------------------------------- API

API_TYPES = ("REST", "HTTP")
# The API resource each ApiType makes answer, and the other one.
API_RESOURCE = {"REST": "RegistryApi", "HTTP": "RegistryHttpApi"}
EVENT_API = {"Api": ("RestApiId", "RegistryApi"), "HttpApi": ("ApiId", "RegistryHttpApi")}


def _api_events(functions: dict) -> dict[str, dict[tuple[str, str], tuple[str, dict]]]:
    """Per SAM event type (Api, HttpApi): (METHOD, path) -> (function, event properties)."""
    routes: dict[str, dict] = {"Api": {}, "HttpApi": {}}
    for name, props in functions.items():
        for event in props.get("Events", {}).values():
            if event["Type"] in EVENT_API:
                p = event["Properties"]
                key, api = EVENT_API[event["Type"]]
                assert p[key] == {"Ref": api}, f"{name} is not on the registry's {event['Type']}"
                routes[event["Type"]][(p["Method"].upper(), p["Path"])] = (name, p)
    return routes


def _parameter_values(sam: dict, **overrides) -> dict:
    values = {name: str(p.get("Default", "")) for name, p in sam["Parameters"].items()}
    values.update(overrides)
    return values


def _evaluate(node, values: dict, conditions: dict):
    """A Conditions expression (or a value inside one) with these parameters."""
    if isinstance(node, dict):
        ((fn, arg),) = node.items()
        if fn == "Ref":
            return values[arg].split(",") if arg == "SubnetIds" else values[arg]
        if fn == "Condition":
            return _evaluate(conditions[arg], values, conditions)
        args = [_evaluate(a, values, conditions) for a in (arg if isinstance(arg, list) else [arg])]
        if fn == "Fn::Equals":
            return args[0] == args[1]
        if fn == "Fn::Not":
            return not args[0]
        if fn == "Fn::And":
            return all(args)
        if fn == "Fn::Or":
            return any(args)
        if fn == "Fn::Join":
            return args[0].join(args[1])
        raise AssertionError(f"the resolver does not know {fn}")
    return node


_DROP = object()


def _pick(node, truth: dict):
    """Every Fn::If replaced by its branch; AWS::NoValue removed."""
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            condition, yes, no = node["Fn::If"]
            return _pick(yes if truth[condition] else no, truth)
        if node == {"Ref": "AWS::NoValue"}:
            return _DROP
        out = {k: _pick(v, truth) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not _DROP}
    if isinstance(node, list):
        return [v for v in (_pick(item, truth) for item in node) if v is not _DROP]
    return node


def _resolve(template: dict, values: dict) -> dict:
    """The template as CloudFormation deploys it with these parameter values:
    resources and outputs whose condition is false left out, every Fn::If
    decided. Conditions are the template's own (the SAM translator adds none
    the tests rely on)."""
    conditions = template.get("Conditions", {})
    truth = {name: bool(_evaluate(expr, values, conditions)) for name, expr in conditions.items()}
    out = {k: v for k, v in template.items() if k != "Conditions"}
    for section in ("Resources", "Outputs"):
        kept = {}
        for name, item in template.get(section, {}).items():
            if item.get("Condition") and not truth[item["Condition"]]:
                continue
            kept[name] = {k: v for k, v in _pick(item, truth).items() if k != "Condition"}
        out[section] = kept
    return out


@pytest.fixture(scope="module", params=API_TYPES)
def api_type(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def deployed(sam, translated, api_type) -> dict:
    """The translated template as deployed with ApiType=api_type (other parameters at their defaults)."""
    return _resolve(translated, _parameter_values(sam, ApiType=api_type))


def _route_paths(body: dict) -> dict[tuple[str, str], dict]:
    return {(method.upper(), path): operation for path, item in body["paths"].items() for method, operation in item.items()}


def test_every_route_is_on_both_apis_and_says_how_it_is_authorized(functions):
    """One event per API for every route, the same on both. Agents' routes
    are public on purpose (the bearer token is checked by the function) and
    say Authorizer: NONE; anything else (/admin) is IAM, the APIs' default."""
    routes = _api_events(functions)
    by_dir = _by_dir(functions)
    expected = {route: by_dir[d][0] for d, route in EXPECTED_FUNCTIONS.items() if route}
    for kind in EVENT_API:
        assert {route: name for route, (name, _) in routes[kind].items()} == expected, kind
        for (method, path), (name, props) in routes[kind].items():
            authorizer = (props.get("Auth") or {}).get("Authorizer", "AWS_IAM")
            if path.startswith("/registry/"):
                assert authorizer == "NONE", (kind, name, path)
            else:
                assert authorizer == "AWS_IAM", (kind, name, path)


def test_sam_deploy_guided_asks_no_authentication_question(sam, functions):
    """`sam deploy --guided` asks "<function> has no authentication. Is this
    okay?" (default N, and N aborts) for every Api/HttpApi event with no Auth
    of its own on an API with no Auth (samcli/lib/utils/resources.py,
    auth_per_resource); every event here and both APIs state theirs."""
    resources = sam["Resources"]
    for name, props in functions.items():
        for event_name, event in props.get("Events", {}).items():
            if event["Type"] in EVENT_API:
                key, _ = EVENT_API[event["Type"]]
                api = resources[event["Properties"][key]["Ref"]]["Properties"]
                assert event["Properties"].get("Auth") or api.get("Auth"), (name, event_name)
    assert resources["RegistryApi"]["Properties"]["Auth"]["DefaultAuthorizer"] == "AWS_IAM"
    # Without this, API Gateway would invoke an IAM route's function with the caller's credentials.
    assert resources["RegistryApi"]["Properties"]["Auth"]["InvokeRole"] == "NONE"
    assert resources["RegistryHttpApi"]["Properties"]["Auth"] == {"EnableIamAuthorizer": True, "DefaultAuthorizer": "AWS_IAM"}


def test_api_type_parameter(sam):
    param = sam["Parameters"]["ApiType"]
    assert param["AllowedValues"] == list(API_TYPES) and param["Default"] == "REST"
    assert sam["Conditions"]["UseHttpApi"] == {"Fn::Equals": [{"Ref": "ApiType"}, "HTTP"]}
    # A WAF web ACL cannot be attached to an HTTP API: refused, not ignored.
    (assertion,) = sam["Rules"]["WebAclNeedsRestApi"]["Assertions"]
    assert sam["Rules"]["WebAclNeedsRestApi"]["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "WebAclArn"}, ""]}]}
    assert assertion["Assert"] == {"Fn::Equals": [{"Ref": "ApiType"}, "REST"]}


def test_each_api_type_lints_clean_as_deployed(deployed, api_type, tmp_path):
    out = tmp_path / f"deployed-{api_type}.json"
    out.write_text(json.dumps(deployed, indent=1, default=str))
    matches = _lint(out)
    errors = [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches if m.rule.id.startswith("E")]
    assert errors == []
    # As for the translated template: only W1020 on the layer's name, and
    # W2001 (parameter not used) for parameters only conditions read.
    warnings = [(m.rule.id, _resource_at(out, m.linenumber)) for m in matches if m.rule.id != "W2001" and not m.rule.id.startswith("E")]
    assert all(rule == "W1020" and resource.startswith("SharedLayer") for rule, resource in warnings), warnings


def test_one_api_answers_with_every_route(deployed, api_type, functions):
    resources = deployed["Resources"]
    rest = resources["RegistryApi"]["Properties"]["Body"]
    http = resources["RegistryHttpApi"]["Properties"]["Body"]
    disabled = {
        "REST": rest["servers"][0]["x-amazon-apigateway-endpoint-configuration"]["disableExecuteApiEndpoint"],
        "HTTP": http["servers"][0]["x-amazon-apigateway-endpoint-configuration"]["disableExecuteApiEndpoint"],
    }
    assert disabled == {t: t != api_type for t in API_TYPES}
    by_dir = _by_dir(functions)
    expected = {route: by_dir[d][0] for d, route in EXPECTED_FUNCTIONS.items() if route}
    body = rest if api_type == "REST" else http
    routes = _route_paths(body)
    assert set(routes) == set(expected)
    for route, function in expected.items():
        integration = routes[route]["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy" and integration["httpMethod"] == "POST"
        assert f"${{{function}.Arn}}" in integration["uri"]["Fn::Sub"], route
        assert integration.get("payloadFormatVersion") == ("2.0" if api_type == "HTTP" else None), route
        assert "credentials" not in integration, route  # no caller credentials
        # Agents' routes are public (the function checks the bearer token); the operators' are IAM.
        assert routes[route]["security"] == [{"NONE": []} if route[1].startswith("/registry/") else {"AWS_IAM": []}], route
        # API Gateway may invoke the function for this route of this API.
        granted = [
            r["Properties"]["SourceArn"]
            for r in resources.values()
            if r["Type"] == "AWS::Lambda::Permission" and r["Properties"]["FunctionName"] == {"Ref": function}
        ]
        assert any(arn["Fn::Sub"][1]["__ApiId__"] == {"Ref": API_RESOURCE[api_type]} for arn in granted), route
    url = deployed["Outputs"]["ApiUrl"]["Value"]["Fn::Sub"]
    assert url == f"https://${{{API_RESOURCE[api_type]}}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}/${{Stage}}"


def _log_record(log_format: str) -> dict:
    """An access-log line of this format, whatever the values: one JSON object."""
    sample = log_format.replace("$context.error.messageString", '"quoted \\"message\\""')
    sample = re.sub(r"\$context\.[A-Za-z.]+", "value", sample)
    return json.loads(sample)


def test_the_answering_api_stage_throttles_and_logs(deployed, api_type):
    resources = deployed["Resources"]
    (rest_stage,) = _of_type(resources, "AWS::ApiGateway::Stage").values()
    (http_stage,) = _of_type(resources, "AWS::ApiGatewayV2::Stage").values()
    rest_stage, http_stage = rest_stage["Properties"], http_stage["Properties"]
    assert rest_stage["StageName"] == http_stage["StageName"] == {"Ref": "Stage"}
    # Stage-wide throttling from the same two parameters on either API.
    (setting,) = rest_stage["MethodSettings"]
    assert setting["ResourcePath"] == "/*" and setting["HttpMethod"] == "*"
    route_settings = http_stage["DefaultRouteSettings"]
    for throttle in (setting, route_settings):
        assert throttle["ThrottlingRateLimit"] == {"Ref": "ApiThrottleRateLimit"}
        assert throttle["ThrottlingBurstLimit"] == {"Ref": "ApiThrottleBurstLimit"}
    # No paid per-method metrics or execution logs.
    assert setting["MetricsEnabled"] is False and setting["LoggingLevel"] == "OFF" and route_settings["DetailedMetricsEnabled"] is False
    assert rest_stage["TracingEnabled"] is True
    # Access logs, one JSON object per request, only on the API that answers
    # (a REST API's need the account's logging role, an HTTP API's do not).
    active, idle = (rest_stage, http_stage) if api_type == "REST" else (http_stage, rest_stage)
    log = active["AccessLogSetting" if api_type == "REST" else "AccessLogSettings"]
    assert "AccessLogSetting" not in idle and "AccessLogSettings" not in idle
    assert _refs(log["DestinationArn"]) == {"ApiAccessLogGroup"}
    route_field = "resourcePath" if api_type == "REST" else "routeKey"
    assert {"requestId", "ip", "httpMethod", route_field, "status", "responseLatency", "integrationLatency", "errorMessage"} <= set(
        _log_record(log["Format"])
    )


def test_rest_api_gateway_answers_keep_the_error_contract(resources):
    """API Gateway's own answers (throttled, too large, no route) are
    {"error": reason} on the REST API. An HTTP API cannot customise them."""
    api = resources["RegistryApi"]["Properties"]
    for kind in ("DEFAULT_4XX", "DEFAULT_5XX", "THROTTLED"):
        body = api["GatewayResponses"][kind]["ResponseTemplates"]["application/json"]
        assert json.loads(body.replace("$context.error.messageString", '"x"')).keys() == {"error"}
    assert api["GatewayResponses"]["THROTTLED"]["ResponseParameters"]["Headers"] == {"Retry-After": "'1'"}
    # The request body limit is the functions' (413 before parsing); neither
    # API can cap a body below API Gateway's 10 MB.
    assert api["EndpointConfiguration"] == {"Type": "REGIONAL"}


def test_iam_is_the_same_with_either_api_type(sam, translated):
    roles = {}
    for api_type in API_TYPES:
        deployed = _resolve(translated, _parameter_values(sam, ApiType=api_type))
        roles[api_type] = {name: r for name, r in deployed["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    assert roles["REST"] == roles["HTTP"]


def test_the_5xx_alarm_watches_the_api_that_answers(sam, api_type):
    deployed = _resolve(sam, _parameter_values(sam, ApiType=api_type))
    watched = {metric: dims for ns, metric, dims in _alarm_metrics(deployed["Resources"]["Api5xxRateAlarm"])}
    if api_type == "REST":
        api = {"ApiName": sam["Resources"]["RegistryApi"]["Properties"]["Name"], "Stage": {"Ref": "Stage"}}
        assert watched == {"5XXError": api, "Count": api}
    else:
        api = {"ApiId": {"Ref": "RegistryHttpApi"}, "Stage": {"Ref": "Stage"}}
        assert watched == {"5xx": api, "Count": api}


def test_waf_association_is_optional_and_on_the_rest_stage(sam, resources):
    assoc = resources["WebAclAssociation"]
    assert assoc["Condition"] == "HasWebAcl"
    assert sam["Conditions"]["HasWebAcl"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "WebAclArn"}, ""]}]}
    assert "/restapis/${RegistryApi}/stages/${RegistryApi.Stage}" in assoc["Properties"]["ResourceArn"]["Fn::Sub"]
    assert assoc["Properties"]["WebACLArn"] == {"Ref": "WebAclArn"}


def test_every_event_file_matches_a_route_or_a_schedule(functions):
    events = _api_events(functions)
    routes, http_routes = events["Api"], events["HttpApi"]
    scheduled = {
        Path(p["CodeUri"]).name
        for p in functions.values()
        if any(e["Type"] in ("Schedule", "ScheduleV2") for e in p.get("Events", {}).values())
    }
    files = sorted(p for p in EVENTS.glob("*.json") if p.name != "env.json")  # env.json: `sam local --env-vars`
    assert files, "events/ is empty"
    for path in files:
        event = json.loads(path.read_text())
        if "httpMethod" in event:
            key = (event["httpMethod"].upper(), event.get("resource") or event["path"])
            assert key in routes, f"events/{path.name}: {key} is not a route of the template"
            # The path is the resource with its parameters ({id}) filled in.
            filled = event["resource"]
            for name, value in (event.get("pathParameters") or {}).items():
                filled = filled.replace("{" + name + "}", value)
            assert event["path"] == filled, f"events/{path.name}: path and resource differ"
        else:
            assert event.get("detail-type") == "Scheduled Event", f"events/{path.name} is neither an API nor a scheduled event"
            assert any(path.stem.startswith(d) for d in scheduled), f"events/{path.name}: no scheduled function {path.stem}"
    # The HTTP API (payload 2.0) samples: each one's route is on the HTTP API.
    http_files = sorted((EVENTS / "http-api").glob("*.json"))
    assert http_files, "events/http-api/ is empty"
    for path in http_files:
        event = json.loads(path.read_text())
        method, route = event["routeKey"].split(" ", 1)
        assert (method, route) in http_routes, f"events/http-api/{path.name}: {event['routeKey']} is not a route of the HTTP API"


# ---------------------------------------------------------------- functions


def test_reserved_concurrency(functions):
    by_dir = _by_dir(functions)
    for directory, (name, props) in by_dir.items():
        if directory == "migrate":
            continue  # runs once per deploy
        value = props["ReservedConcurrentExecutions"]
        assert value["Fn::If"][0] == "DoReserveConcurrency" and value["Fn::If"][2] == {"Ref": "AWS::NoValue"}, name
        assert 1 <= value["Fn::If"][1] <= 200, name
    assert by_dir["liveness_sweep"][1]["ReservedConcurrentExecutions"]["Fn::If"][1] == 1  # one sweep at a time


def test_vpc_config_on_every_function(functions):
    for name, props in functions.items():
        vpc = props["VpcConfig"]
        assert _refs(vpc["SecurityGroupIds"]) == {"FunctionSecurityGroup", "FunctionSecurityGroupId"}, name
        assert _refs(vpc["SubnetIds"]) == {"PrivateSubnetA", "PrivateSubnetB", "SubnetIds"}, name


def test_sweep_runs_every_minute_with_a_dead_letter_target(functions, resources):
    _, sweep = _by_dir(functions)["liveness_sweep"]
    (schedule,) = sweep["Events"].values()
    assert schedule["Type"] == "ScheduleV2"
    assert schedule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    assert schedule["Properties"]["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["SweepDeadLetterQueue", "Arn"]}}
    # Failures inside the function (async invocation) land in the same queue.
    invoke = sweep["EventInvokeConfig"]
    assert invoke["MaximumRetryAttempts"] == 0
    assert invoke["DestinationConfig"]["OnFailure"] == {"Type": "SQS", "Destination": {"Fn::GetAtt": ["SweepDeadLetterQueue", "Arn"]}}
    assert sweep["Timeout"] < 60, "a sweep must end before the next one starts"
    assert resources["SweepDeadLetterQueue"]["Type"] == "AWS::SQS::Queue"


# ---------------------------------------------------------------- IAM

ALLOWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",  # logs
    "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",  # ENIs
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",  # tracing
}
# Services whose statements must name their resources.
SCOPED_SERVICES = ("events", "secretsmanager", "sqs", "kms", "rds-db", "ssm", "lambda", "s3")


def _statements(role: dict) -> list[dict]:
    out = []
    for policy in role["Properties"].get("Policies", []):
        statements = policy["PolicyDocument"]["Statement"]
        out.extend(statements if isinstance(statements, list) else [statements])
    return out


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_iam_statements_are_scoped(translated):
    roles = _of_type(translated["Resources"], "AWS::IAM::Role")
    assert not _of_type(translated["Resources"], "AWS::IAM::Policy"), "inline policies only, on their roles"
    assert not _of_type(translated["Resources"], "AWS::IAM::ManagedPolicy")
    for name, role in roles.items():
        managed = role["Properties"].get("ManagedPolicyArns", [])
        if name == "ApiGatewayLoggingRole":
            assert managed == [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"}]
        else:
            assert set(managed) <= ALLOWED_MANAGED_POLICIES, (name, managed)
        for statement in _statements(role):
            assert statement["Effect"] == "Allow", (name, statement)
            actions = _as_list(statement["Action"])
            assert not [a for a in actions if a == "*" or a.endswith(":*")], (name, actions)
            if any(a.split(":")[0] in SCOPED_SERVICES for a in actions):
                for resource in _as_list(statement["Resource"]):
                    assert resource != "*" and not (isinstance(resource, str) and resource.endswith(":*")), (name, statement)
                    assert _refs(resource), f"{name}: {resource} names no resource of the stack"


def _function_permissions(translated: dict, function: str) -> dict[str, set[str]]:
    """action -> the stack resources/parameters its statements name."""
    role = translated["Resources"][f"{function}Role"]
    out: dict[str, set[str]] = {}
    for statement in _statements(role):
        for action in _as_list(statement["Action"]):
            out.setdefault(action, set()).update(_refs(statement["Resource"]))
    return out


def test_each_function_has_only_the_permissions_it_needs(translated, functions):
    secret = {"DatabaseSecret", "ExistingDatabaseSecretArn"}
    for directory, (name, _) in _by_dir(functions).items():
        permissions = _function_permissions(translated, name)
        expected = {"secretsmanager:GetSecretValue": secret}
        if directory not in ("migrate", "discover", "peers", "check_access") and not directory.startswith("admin_"):  # reads publish nothing
            expected["events:PutEvents"] = {"EventBus"}
        if directory == "liveness_sweep":  # failed invocations go to its DLQ
            expected["sqs:SendMessage"] = {"SweepDeadLetterQueue"}
        assert permissions == expected, name
    # The scheduler may invoke the sweep and park undeliverable ticks, nothing else.
    (schedule_role,) = [
        n
        for n in translated["Resources"]
        if n.startswith("LivenessSweepFunction") and n.endswith("Role") and n != "LivenessSweepFunctionRole"
    ]
    granted = {a: _refs(s["Resource"]) for s in _statements(translated["Resources"][schedule_role]) for a in _as_list(s["Action"])}
    assert granted == {"lambda:InvokeFunction": {"LivenessSweepFunction"}, "sqs:SendMessage": {"SweepDeadLetterQueue"}}


def test_proxy_reads_only_its_secret(resources):
    (statement,) = resources["DatabaseProxyRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "secretsmanager:GetSecretValue" and statement["Resource"] == {"Ref": "DatabaseSecret"}


# ---------------------------------------------------------------- data


def test_database_is_tls_only_behind_rds_proxy(sam, resources):
    proxy = resources["DatabaseProxy"]["Properties"]
    assert proxy["RequireTLS"] is True and proxy["EngineFamily"] == "POSTGRESQL"
    (auth,) = proxy["Auth"]
    assert auth["AuthScheme"] == "SECRETS" and auth["SecretArn"] == {"Ref": "DatabaseSecret"}
    target = resources["DatabaseProxyTargetGroup"]["Properties"]
    assert target["DBClusterIdentifiers"] == [{"Ref": "DatabaseCluster"}]
    cluster = resources["DatabaseCluster"]
    assert cluster["Properties"]["Engine"] == "aurora-postgresql" and cluster["Properties"]["StorageEncrypted"] is True
    assert "ServerlessV2ScalingConfiguration" in cluster["Properties"]
    assert cluster["DeletionPolicy"] == "Snapshot" and cluster["UpdateReplacePolicy"] == "Snapshot"
    assert resources["DatabaseClusterParameters"]["Properties"]["Parameters"] == {"rds.force_ssl": "1"}
    assert resources["DatabaseInstance"]["Properties"]["DBInstanceClass"] == "db.serverless"
    # The password is generated into Secrets Manager and only resolved there.
    assert "{{resolve:secretsmanager:${DatabaseSecret}" in cluster["Properties"]["MasterUserPassword"]["Fn::Sub"]
    for name in ("DatabaseSecret", "DatabaseCluster", "DatabaseInstance", "DatabaseProxy", "DatabaseProxyTargetGroup"):
        assert resources[name]["Condition"] == "CreateDatabase", name


def test_cache_is_serverless_with_tls(resources):
    cache = resources["Cache"]
    assert cache["Type"] == "AWS::ElastiCache::ServerlessCache"  # always TLS, hence rediss://
    assert cache["Properties"]["Engine"] in ("valkey", "redis")
    assert cache["Properties"]["SecurityGroupIds"] == [{"Fn::GetAtt": ["CacheSecurityGroup", "GroupId"]}]


FUNCTION_SG = {"FunctionSecurityGroup", "FunctionSecurityGroupId"}


@pytest.mark.parametrize(
    "group, port, sources",
    [
        ("CacheSecurityGroup", 6379, FUNCTION_SG),
        ("ProxySecurityGroup", 5432, FUNCTION_SG),
        ("DatabaseSecurityGroup", 5432, {"ProxySecurityGroup"}),
    ],
)
def test_security_groups_let_only_the_functions_in(resources, group, port, sources):
    (rule,) = resources[group]["Properties"]["SecurityGroupIngress"]
    assert "CidrIp" not in rule and "CidrIpv6" not in rule
    assert rule["FromPort"] == port and rule["IpProtocol"] == "tcp"
    assert _refs(rule["SourceSecurityGroupId"]) == sources
    assert "SecurityGroupIngress" not in resources["FunctionSecurityGroup"]["Properties"]
    existing = resources["ExistingDatabaseIngress"]
    assert existing["Condition"] == "OpenExistingDatabase"
    assert _refs(existing["Properties"]["SourceSecurityGroupId"]) == FUNCTION_SG


EXISTING_DATABASE = {
    "ExistingDatabaseSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:platform-db-AbCdEf",
    "ExistingDatabaseProxyEndpoint": "platform.proxy-abc.us-east-1.rds.amazonaws.com",
}


@pytest.mark.parametrize(
    "parameters, sources",
    [
        ({}, [{"FunctionSecurityGroup"}, {"ProxySecurityGroup"}]),
        (
            {**EXISTING_DATABASE, "ExistingDatabaseSecurityGroupId": "sg-0123456789abcdef0"},
            [{"FunctionSecurityGroup"}, {"ExistingDatabaseSecurityGroupId"}],
        ),
        (EXISTING_DATABASE, [{"FunctionSecurityGroup"}]),
    ],
    ids=["new-database", "existing-proxy-group", "existing-proxy-no-group"],
)
def test_endpoints_let_in_the_functions_and_the_database_proxy(sam, parameters, sources):
    """The interface endpoints (Secrets Manager, EventBridge) take HTTPS from
    the functions, and from the proxy, which reads its database secret."""
    deployed = _resolve(sam, _parameter_values(sam, **parameters))
    rules = deployed["Resources"]["EndpointSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [_refs(rule["SourceSecurityGroupId"]) for rule in rules] == sources
    for rule in rules:
        assert rule["IpProtocol"] == "tcp" and rule["FromPort"] == rule["ToPort"] == 443
        assert "CidrIp" not in rule and "CidrIpv6" not in rule


def test_created_network_has_the_endpoints_the_functions_need(resources):
    services = {r["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[1] for r in _of_type(resources, "AWS::EC2::VPCEndpoint").values()}
    # Secrets Manager (credentials), EventBridge (PutEvents), S3 (the
    # migration's answer to CloudFormation). No NAT gateway.
    assert services == {"secretsmanager", "events", "s3"}
    assert not _of_type(resources, "AWS::EC2::NatGateway") and not _of_type(resources, "AWS::EC2::InternetGateway")


# ---------------------------------------------------------------- migration


def test_migration_runs_as_a_custom_resource_on_create_and_update(sam, resources, functions):
    from devstack import harness

    resource = resources["SchemaMigration"]
    assert resource["Type"].startswith("Custom::")
    props = resource["Properties"]
    assert props["ServiceToken"] == {"Fn::GetAtt": ["MigrateFunction", "Arn"]}
    # The layer's version changes whenever a migration file does: Update.
    assert props["SharedLayerVersion"] == {"Ref": "SharedLayer"}
    module = harness.load_function("migrate")
    timeout = functions["MigrateFunction"]["Timeout"]
    # The handler answers before the function times out, and CloudFormation
    # waits a little longer than that (not its default hour).
    assert module.RESPONSE_RESERVE_SECONDS * 2 < timeout < props["ServiceTimeout"] <= 3600
    # New code is deployed only after the schema it needs.
    for directory, (name, _) in _by_dir(functions).items():
        if directory != "migrate":
            assert resources[name]["DependsOn"] == "SchemaMigration", name
    assert not functions["MigrateFunction"].get("Events")


# ---------------------------------------------------------------- events


def test_bus_archive_and_example_rules(resources):
    assert resources["EventBus"]["Type"] == "AWS::Events::EventBus"
    archive = resources["EventArchive"]["Properties"]
    assert archive["SourceArn"] == {"Fn::GetAtt": ["EventBus", "Arn"]} and archive["EventPattern"] == {"source": ["workspace-registry"]}
    schema_types = {p.stem for p in SCHEMAS.glob("*.json")}
    rules = _of_type(resources, "AWS::Events::Rule")
    for name, rule in rules.items():
        props = rule["Properties"]
        assert props["EventBusName"] == {"Ref": "EventBus"}, name
        assert props["EventPattern"]["source"] == ["workspace-registry"], name
        assert set(props["EventPattern"]["detail-type"]) <= schema_types, name
    # Status events -> CloudWatch Logs, with the group's own resource policy.
    (target,) = rules["StatusEventsRule"]["Properties"]["Targets"]
    assert target["Arn"]["Fn::Sub"].endswith(":log-group:${StatusEventsLogGroup}")
    group = resources["StatusEventsLogGroup"]["Properties"]
    assert group["LogGroupName"]["Fn::Sub"].startswith("/aws/events/")
    assert group["ResourcePolicyDocument"]["Statement"][0]["Principal"]["Service"][0] == "events.amazonaws.com"
    # WORKSPACE_OFFLINE -> a queue with its own DLQ (redrive and delivery failures).
    offline = rules["OfflineEventsRule"]["Properties"]
    assert offline["EventPattern"]["detail-type"] == ["WORKSPACE_OFFLINE"]
    (target,) = offline["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["OfflineQueue", "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["OfflineDeadLetterQueue", "Arn"]}}
    redrive = resources["OfflineQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["OfflineDeadLetterQueue", "Arn"]}
    (statement,) = resources["OfflineQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Fn::GetAtt": ["OfflineEventsRule", "Arn"]}


# ---------------------------------------------------------------- alarms


def _metrics_emitted() -> set[str]:
    """Metric names the layer emits (count("X") / add_metric(name="X"))."""
    names = set()
    for path in (LAYER / "registry").glob("*.py"):
        text = path.read_text()
        names |= set(re.findall(r"""\bcount\(\s*["'](\w+)["']""", text))
        names |= set(re.findall(r"""add_metric\(\s*name=["'](\w+)["']""", text))
    return names


def _alarm_metrics(alarm: dict) -> list[tuple[str, str, dict]]:
    props = alarm["Properties"]
    if "MetricName" in props:
        return [(props["Namespace"], props["MetricName"], {d["Name"]: d["Value"] for d in props.get("Dimensions", [])})]
    out = []
    for metric in props["Metrics"]:
        if "MetricStat" in metric:
            m = metric["MetricStat"]["Metric"]
            out.append((m["Namespace"], m["MetricName"], {d["Name"]: d["Value"] for d in m.get("Dimensions", [])}))
    return out


def test_alarms_cover_what_the_issue_lists(sam, functions):
    resources = _resolve(sam, _parameter_values(sam))["Resources"]
    alarms = _of_type(resources, "AWS::CloudWatch::Alarm")
    watched = [(name, ns, metric, dims) for name, a in alarms.items() for ns, metric, dims in _alarm_metrics(a)]

    def alarmed(namespace, metric, **dims):
        return [n for n, ns, m, d in watched if ns == namespace and m == metric and all(d.get(k) == v for k, v in dims.items())]

    # The API alarm watches whichever API answers (test_the_5xx_alarm_watches_the_api_that_answers).
    assert [name for name, ns, _, _ in watched if ns == "AWS/ApiGateway"] == ["Api5xxRateAlarm", "Api5xxRateAlarm"]
    for directory, (name, _) in _by_dir(functions).items():
        if directory in ("migrate",):
            continue  # CloudFormation reports its failures
        assert alarmed("AWS/Lambda", "Errors", FunctionName={"Ref": name}), f"no error alarm for {name}"
        assert alarmed("AWS/Lambda", "Throttles", FunctionName={"Ref": name}), f"no throttle alarm for {name}"
    assert alarmed("AWS/SQS", "ApproximateNumberOfMessagesVisible", QueueName={"Fn::GetAtt": ["SweepDeadLetterQueue", "QueueName"]})
    assert alarmed("AWS/Lambda", "Invocations", FunctionName={"Ref": "LivenessSweepFunction"})


def test_custom_metric_alarms_watch_metrics_the_code_emits(sam):
    resources = _resolve(sam, _parameter_values(sam))["Resources"]
    variables = sam["Globals"]["Function"]["Environment"]["Variables"]
    emitted = _metrics_emitted()
    custom = [
        (name, ns, metric, dims)
        for name, a in _of_type(resources, "AWS::CloudWatch::Alarm").items()
        for ns, metric, dims in _alarm_metrics(a)
        if not (isinstance(ns, str) and ns.startswith("AWS/"))
    ]
    watched = {metric for _, _, metric, _ in custom}
    assert {"SelfPreservationActive", "OldestPendingEventAgeSeconds", "SweepExpirySkipped"} <= watched
    for name, namespace, metric, dims in custom:
        assert metric in emitted, f"{name} watches {metric}, which no code emits"
        # Powertools publishes in POWERTOOLS_METRICS_NAMESPACE with service=POWERTOOLS_SERVICE_NAME.
        assert namespace == variables["POWERTOOLS_METRICS_NAMESPACE"], name
        assert dims == {"service": variables["POWERTOOLS_SERVICE_NAME"]}, name


def test_alarms_notify_the_optional_topic(resources):
    for name, alarm in _of_type(resources, "AWS::CloudWatch::Alarm").items():
        assert alarm["Properties"]["AlarmActions"] == {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}, (
            name
        )


# ---------------------------------------------------------------- parameters and outputs


def test_parameters_the_issue_asks_for(sam):
    params = sam["Parameters"]
    for name in (
        "Stage",
        "SubnetIds",
        "VpcId",
        "FunctionSecurityGroupId",
        "ExistingDatabaseProxyEndpoint",
        "ExistingDatabaseSecretArn",
        "LivenessTtlSeconds",
        "SaasMode",
        "LogRetentionDays",
        "WebAclArn",
    ):
        assert name in params, name
    # Graviton by default; x86_64 only to build and run the artifacts on an x86 machine.
    assert params["Architecture"]["Default"] == "arm64" and set(params["Architecture"]["AllowedValues"]) == {"arm64", "x86_64"}
    conditions = sam["Conditions"]
    assert conditions["CreateNetwork"] == {"Fn::Equals": [{"Fn::Join": ["", {"Ref": "SubnetIds"}]}, ""]}
    assert conditions["CreateDatabase"] == {"Fn::Equals": [{"Ref": "ExistingDatabaseSecretArn"}, ""]}
    assert params["SaasMode"]["AllowedValues"] == ["saas", "self-hosted"]


def test_outputs_tell_a_consumer_how_to_subscribe(sam):
    outputs = sam["Outputs"]
    for name in ("ApiUrl", "EventBusName", "EventBusArn", "CacheEndpoint", "EventSource", "EventDetailTypes", "ConsumerEventPattern"):
        assert name in outputs, name
    assert outputs["EventSource"]["Value"] == "workspace-registry"
    assert set(outputs["EventDetailTypes"]["Value"].split(",")) == {p.stem for p in SCHEMAS.glob("*.json")}
    pattern = json.loads(outputs["ConsumerEventPattern"]["Value"])
    assert pattern["source"] == ["workspace-registry"]
    assert outputs["EventBusArn"]["Value"] == {"Fn::GetAtt": ["EventBus", "Arn"]} and "Export" in outputs["EventBusArn"]
    assert outputs["CacheEndpoint"]["Value"]["Fn::Sub"].startswith("rediss://")
    # ApiUrl names the API that answers (test_one_api_answers_with_every_route).
    assert outputs["ApiUrl"]["Value"]["Fn::If"][0] == "UseHttpApi" and outputs["ApiType"]["Value"] == {"Ref": "ApiType"}
