//! Least privilege, read from the SAM template itself.
//!
//! Every IAM policy statement in the stack is walked: inline `Policies` of
//! `AWS::IAM::Role`, `PolicyDocument`s of policy resources (`AWS::IAM::Policy`,
//! `AWS::IAM::ManagedPolicy`, bucket, queue and topic policies), and the
//! `Policies` of `AWS::Serverless::Function` / `StateMachine` (inline
//! statements, SAM policy templates, managed policies). Trust policies
//! (`AssumeRolePolicyDocument`) name principals, not resources, and are not
//! walked; neither are KMS key policies, where `Resource: "*"` means "this key".
//!
//! An `Allow` statement fails the check when
//! * an action is `*` or `service:*`, or has a `*` anywhere for a data service
//!   (DynamoDB, SQS, S3, Secrets Manager, KMS, SSM, CloudWatch Logs);
//! * it uses `NotAction` or `NotResource` (grants everything but a list);
//! * a resource is `*`, or an ARN with a wildcard service, region or account,
//!   or a wildcard over a whole resource type (`table/*`, `secret:*`,
//!   `log-group:*`, `arn:aws:s3:::*`), unless every action in the statement is
//!   on [`UNSCOPED_ACTIONS`];
//! * a resource refers (`Ref`, `Fn::GetAtt`, `${..}`) to nothing in the stack.
//!
//! `Fn::Sub`, `Fn::If`, `Fn::Select`, `Fn::Split` and `Fn::Join` are evaluated
//! (every `Fn::If` branch) so a wildcard built by an intrinsic is seen too.
//! SAM policy templates are scoped by their parameters: each must be a `Ref` /
//! `Fn::GetAtt` of one of the stack's own resources. A managed policy
//! (`ManagedPolicyArns`, or a name in SAM `Policies`) is refused: its
//! statements are not in the template, so they cannot be checked here.
//!
//! The checker reads the committed `template.yaml` and the rendering of
//! `config/exports.replenishment.yaml`, and is itself checked on synthetic
//! templates (it must flag `dynamodb:*` on `*`, and must not flag scoped grants).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use dataout_cli::template::render_file;
use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::{json, Map, Value};

const COMMITTED: &str = "template.yaml";
const SECOND_SPEC: &str = "config/exports.replenishment.yaml";

/// Services whose actions read or write data: any `*` in one of their actions
/// is refused, whatever the resource.
const DATA_SERVICES: &[&str] = &[
    "dynamodb",
    "sqs",
    "s3",
    "secretsmanager",
    "kms",
    "ssm",
    "logs",
];

/// Actions IAM has no resource-level permissions for: AWS accepts them only
/// with `Resource: "*"` (the service authorization reference lists no resource
/// types for them), so `*` there is not a broad grant. Exactly these, each
/// with why; add one only when the reference says the same of it.
const UNSCOPED_ACTIONS: &[(&str, &str)] = &[
    (
        "xray:PutTraceSegments",
        "X-Ray trace upload: no resource types; the active-tracing functions need it",
    ),
    (
        "xray:PutTelemetryRecords",
        "X-Ray daemon telemetry: no resource types",
    ),
    (
        "cloudwatch:PutMetricData",
        "metrics have no ARN; it can be scoped only by the cloudwatch:namespace condition key",
    ),
];

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

// ------------------------------------------------------------- parsing

/// YAML as CloudFormation reads it, as JSON. The short forms of intrinsics
/// (`!Ref X`, `!GetAtt A.Arn`, `!Sub ..`, `!If [..]`, ...) keep their tag and
/// become the long form (`{"Ref": "X"}`, `{"Fn::GetAtt": ["A", "Arn"]}`, ...).
fn to_json(node: &Yaml<'_>) -> Value {
    match node {
        Yaml::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Value(Scalar::String(s)) => json!(s.as_ref()),
        Yaml::Value(Scalar::Integer(i)) => json!(i),
        Yaml::Value(Scalar::FloatingPoint(f)) => json!(f.into_inner()),
        Yaml::Value(Scalar::Boolean(b)) => json!(b),
        Yaml::Value(Scalar::Null) => Value::Null,
        Yaml::Tagged(tag, inner) => {
            let inner = to_json(inner);
            if tag.handle != "!" {
                // A core-schema tag (`!!str`, ...): the value as resolved.
                return inner;
            }
            match tag.suffix.as_str() {
                "Ref" | "Condition" => json!({ tag.suffix.as_str(): inner }),
                "GetAtt" => match inner {
                    Value::String(s) => {
                        let (res, attr) = s.split_once('.').unwrap_or((s.as_str(), ""));
                        json!({ "Fn::GetAtt": [res, attr] })
                    }
                    other => json!({ "Fn::GetAtt": other }),
                },
                name => json!({ format!("Fn::{name}"): inner }),
            }
        }
        other => panic!("unexpected YAML node {other:?}"),
    }
}

fn parse_template(text: &str) -> Value {
    let docs = Yaml::load_from_str(text).expect("the template is YAML");
    assert_eq!(docs.len(), 1, "one YAML document");
    to_json(&docs[0])
}

fn committed_template() -> Value {
    parse_template(&std::fs::read_to_string(repo(COMMITTED)).expect("template.yaml"))
}

fn second_spec_template() -> Value {
    parse_template(&render_file(&repo(SECOND_SPEC), SECOND_SPEC).expect("the second spec renders"))
}

// ------------------------------------------------------------- the stack

/// What a parameter may be at deploy time, for evaluating resources.
#[derive(Clone, Copy, PartialEq)]
enum Params {
    /// A parameter stands for a name that is not a wildcard (its
    /// constraints are trusted: regexes are not evaluated here).
    Trusted,
    /// A `String` parameter with neither `AllowedValues` nor `AllowedPattern`
    /// may be `*`; `AllowedValues` are tried one by one.
    WorstCase,
}

struct Stack<'t> {
    resources: &'t Map<String, Value>,
    parameters: Map<String, Value>,
    params: Params,
}

impl<'t> Stack<'t> {
    fn new(t: &'t Value, params: Params) -> Self {
        Stack {
            resources: t["Resources"].as_object().expect("Resources"),
            parameters: t["Parameters"].as_object().cloned().unwrap_or_default(),
            params,
        }
    }

    fn is_resource(&self, id: &str) -> bool {
        self.resources.contains_key(id)
    }

    /// The values `Ref: name` may take; `None` when it names nothing.
    fn ref_values(&self, name: &str) -> Option<Vec<String>> {
        let pseudo = match name {
            "AWS::Partition" => Some("aws"),
            "AWS::Region" => Some("us-east-1"),
            "AWS::AccountId" => Some("123456789012"),
            "AWS::URLSuffix" => Some("amazonaws.com"),
            "AWS::StackName" | "AWS::StackId" | "AWS::NotificationARNs" => Some("stack"),
            _ => None,
        };
        if let Some(v) = pseudo {
            return Some(vec![v.to_string()]);
        }
        if self.is_resource(name) {
            return Some(vec![format!("{name}-physical-id")]);
        }
        let p = self.parameters.get(name)?;
        if self.params == Params::Trusted {
            return Some(vec![format!("{name}-value")]);
        }
        if let Some(allowed) = p["AllowedValues"].as_array() {
            return Some(allowed.iter().map(scalar_text).collect());
        }
        if p.get("AllowedPattern").is_some() || p["Type"] != "String" {
            return Some(vec![format!("{name}-value")]);
        }
        Some(vec!["*".to_string()])
    }

    /// `Fn::GetAtt` of an own resource: an ARN in the resource's own
    /// namespace (bucket ARNs have no region or account).
    fn getatt_value(&self, id: &str, attr: &str) -> Option<String> {
        let r = self.resources.get(id)?;
        if attr != "Arn" {
            return Some(format!("{id}-{attr}"));
        }
        Some(match r["Type"].as_str().unwrap_or("") {
            "AWS::S3::Bucket" => format!("arn:aws:s3:::{id}-bucket"),
            "AWS::DynamoDB::Table" => {
                format!("arn:aws:dynamodb:us-east-1:123456789012:table/{id}-table")
            }
            "AWS::SQS::Queue" => format!("arn:aws:sqs:us-east-1:123456789012:{id}-queue"),
            "AWS::Logs::LogGroup" => {
                format!("arn:aws:logs:us-east-1:123456789012:log-group:{id}-group:*")
            }
            _ => format!("arn:aws:own:us-east-1:123456789012:resource/{id}"),
        })
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every value an expression may take (each `Fn::If` branch), or why it
/// cannot be evaluated / refers to something outside the stack.
fn evaluate(v: &Value, stack: &Stack<'_>) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Number(n) => Ok(vec![n.to_string()]),
        Value::Bool(b) => Ok(vec![b.to_string()]),
        Value::Object(o) if o.len() == 1 => {
            let (f, args) = o.iter().next().unwrap();
            match f.as_str() {
                "Ref" => {
                    let name = args.as_str().ok_or("Ref of a non-name")?;
                    if name == "AWS::NoValue" {
                        return Ok(vec![]);
                    }
                    stack.ref_values(name).ok_or(format!(
                        "Ref {name}: not a resource or parameter of this stack"
                    ))
                }
                "Fn::GetAtt" => {
                    let (id, attr) = match args {
                        Value::Array(a) if a.len() == 2 => (scalar_text(&a[0]), scalar_text(&a[1])),
                        Value::String(s) => {
                            let (id, attr) = s.split_once('.').unwrap_or((s, ""));
                            (id.to_string(), attr.to_string())
                        }
                        other => return Err(format!("Fn::GetAtt of {other}")),
                    };
                    stack
                        .getatt_value(&id, &attr)
                        .map(|v| vec![v])
                        .ok_or(format!(
                            "Fn::GetAtt {id}.{attr}: not a resource of this stack"
                        ))
                }
                "Fn::Sub" => {
                    let (text, vars) = match args {
                        Value::String(s) => (s.clone(), Map::new()),
                        Value::Array(a) if a.len() == 2 => (
                            a[0].as_str().ok_or("Fn::Sub text")?.to_string(),
                            a[1].as_object().cloned().unwrap_or_default(),
                        ),
                        other => return Err(format!("Fn::Sub of {other}")),
                    };
                    substitute(&text, stack, &vars)
                }
                "Fn::If" => {
                    let a = args
                        .as_array()
                        .filter(|a| a.len() == 3)
                        .ok_or("Fn::If arity")?;
                    let mut out = evaluate(&a[1], stack)?;
                    out.extend(evaluate(&a[2], stack)?);
                    Ok(out)
                }
                "Fn::Select" => {
                    let a = args
                        .as_array()
                        .filter(|a| a.len() == 2)
                        .ok_or("Fn::Select arity")?;
                    let i: usize = scalar_text(&a[0]).parse().map_err(|_| "Fn::Select index")?;
                    // Out of range fails the deploy, so no grant: an opaque name.
                    Ok(evaluate_list(&a[1], stack)?
                        .into_iter()
                        .map(|l| l.get(i).cloned().unwrap_or_else(|| "selected".into()))
                        .collect())
                }
                "Fn::Join" => {
                    let a = args
                        .as_array()
                        .filter(|a| a.len() == 2)
                        .ok_or("Fn::Join arity")?;
                    let sep = scalar_text(&a[0]);
                    Ok(evaluate_list(&a[1], stack)?
                        .into_iter()
                        .map(|l| l.join(&sep))
                        .collect())
                }
                other => Err(format!("{other} {args}: cannot be checked")),
            }
        }
        other => Err(format!("{other}: not a resource expression")),
    }
}

/// The lists an expression may take (`Fn::Split`, or a sequence).
fn evaluate_list(v: &Value, stack: &Stack<'_>) -> Result<Vec<Vec<String>>, String> {
    match v {
        Value::Array(items) => {
            let mut lists = vec![vec![]];
            for item in items {
                let values = evaluate(item, stack)?;
                lists = lists
                    .into_iter()
                    .flat_map(|l| {
                        values.iter().map(move |x| {
                            let mut l = l.clone();
                            l.push(x.clone());
                            l
                        })
                    })
                    .collect();
            }
            Ok(lists)
        }
        Value::Object(o) if o.contains_key("Fn::Split") => {
            let a = o["Fn::Split"]
                .as_array()
                .filter(|a| a.len() == 2)
                .ok_or("Fn::Split arity")?;
            let sep = scalar_text(&a[0]);
            Ok(evaluate(&a[1], stack)?
                .into_iter()
                .map(|s| s.split(sep.as_str()).map(str::to_string).collect())
                .collect())
        }
        other => Err(format!("{other}: not a list")),
    }
}

/// `Fn::Sub` text with `${Name}`, `${Res.Attr}`, `${!Literal}` replaced.
fn substitute(
    text: &str,
    stack: &Stack<'_>,
    vars: &Map<String, Value>,
) -> Result<Vec<String>, String> {
    let mut outs = vec![String::new()];
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let lit = &rest[..start];
        outs.iter_mut().for_each(|o| o.push_str(lit));
        let end = rest[start..].find('}').ok_or("Fn::Sub: unclosed ${")? + start;
        let name = &rest[start + 2..end];
        let values = if let Some(literal) = name.strip_prefix('!') {
            vec![format!("${{{literal}}}")]
        } else if let Some(v) = vars.get(name) {
            evaluate(v, stack)?
        } else if let Some((id, attr)) = name.split_once('.').filter(|_| !name.starts_with("AWS::"))
        {
            vec![stack
                .getatt_value(id, attr)
                .ok_or(format!("${{{name}}}: not a resource of this stack"))?]
        } else {
            stack.ref_values(name).ok_or(format!(
                "${{{name}}}: not a resource or parameter of this stack"
            ))?
        };
        outs = outs
            .into_iter()
            .flat_map(|o| values.iter().map(move |v| format!("{o}{v}")))
            .collect();
        rest = &rest[end + 1..];
    }
    outs.iter_mut().for_each(|o| o.push_str(rest));
    Ok(outs)
}

/// `*`, or an ARN that is a wildcard over a service, a region, an account or
/// a whole resource type (`table/*`, `secret:*`, `log-group:*`, `arn:aws:s3:::*`).
/// A wildcard below one named resource (`bucket/*`, `table/T/index/*`,
/// `log-group:G:*`, `secret:S-??????`) is scoped to it and passes.
fn wildcard_resource(r: &str) -> bool {
    if r.starts_with('*') {
        return true;
    }
    if !r.starts_with("arn:") {
        return false;
    }
    let parts: Vec<&str> = r.splitn(6, ':').collect();
    if parts.len() < 6 {
        return r.contains('*');
    }
    if parts[1..5].iter().any(|p| p.contains('*')) {
        return true;
    }
    let (service, resource) = (parts[2], parts[5]);
    if resource.starts_with('*') {
        return true;
    }
    // `type/name` or `type:name`: the name must not be a wildcard (S3 has no
    // type: its resource is `bucket[/key]`).
    if service != "s3" {
        if let Some(i) = resource.find(['/', ':']) {
            return resource[i + 1..].starts_with('*');
        }
    }
    false
}

// ------------------------------------------------------------- the walk

#[derive(Debug, Clone)]
struct Violation {
    /// The function(s) the grant reaches (through its role), or the resource.
    owner: String,
    /// The statement's `Sid`, else its position, or the SAM policy's name.
    statement: String,
    what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: statement {}: {}",
            self.owner, self.statement, self.what
        )
    }
}

#[derive(Default)]
struct Report {
    violations: Vec<Violation>,
    /// Allow statements walked, by owner.
    statements: BTreeMap<String, usize>,
    /// Every action seen in an Allow statement.
    actions: BTreeSet<String>,
}

impl Report {
    fn flag(&mut self, owner: &str, statement: &str, what: String) {
        self.violations.push(Violation {
            owner: owner.to_string(),
            statement: statement.to_string(),
            what,
        });
    }

    fn listing(&self) -> String {
        self.violations.iter().map(|v| format!("  {v}\n")).collect()
    }
}

fn service_of(action: &str) -> String {
    action.split(':').next().unwrap_or("").to_ascii_lowercase()
}

fn unscoped(action: &str) -> bool {
    UNSCOPED_ACTIONS
        .iter()
        .any(|(a, _why)| a.eq_ignore_ascii_case(action))
}

/// The function logical ids whose `Role` is this role.
fn functions_by_role(t: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, r) in t["Resources"].as_object().unwrap() {
        let role = &r["Properties"]["Role"];
        let role_id = match role {
            Value::Object(o) if o.contains_key("Fn::GetAtt") => match &o["Fn::GetAtt"] {
                Value::Array(a) => a.first().map(scalar_text),
                Value::String(s) => s.split('.').next().map(str::to_string),
                _ => None,
            },
            Value::Object(o) => o.get("Ref").map(scalar_text),
            _ => None,
        };
        if let Some(role_id) = role_id {
            out.entry(role_id).or_default().push(id.clone());
        }
    }
    out
}

fn statements(doc: &Value) -> Vec<&Value> {
    match &doc["Statement"] {
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![&doc["Statement"]],
        _ => vec![],
    }
}

fn check_statement(stack: &Stack<'_>, owner: &str, index: usize, st: &Value, report: &mut Report) {
    if st["Effect"] == "Deny" {
        return;
    }
    let label = st["Sid"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("#{}", index + 1));
    *report.statements.entry(owner.to_string()).or_default() += 1;
    for key in ["NotAction", "NotResource"] {
        if st.get(key).is_some() {
            report.flag(
                owner,
                &label,
                format!("Allow with {key} grants all but a list"),
            );
        }
    }
    let actions: Vec<String> = match &st["Action"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) if a.iter().all(Value::is_string) => a.iter().map(scalar_text).collect(),
        Value::Null => vec![],
        other => {
            report.flag(
                owner,
                &label,
                format!("Action {other} is not a list of names"),
            );
            vec![]
        }
    };
    for a in &actions {
        report.actions.insert(a.clone());
        let service = service_of(a);
        if a == "*" {
            report.flag(
                owner,
                &label,
                "action \"*\" (every action of every service)".into(),
            );
        } else if a.split_once(':').is_some_and(|(_, name)| name == "*") {
            report.flag(
                owner,
                &label,
                format!("action \"{a}\" (every action of {service})"),
            );
        } else if a.contains('*') && DATA_SERVICES.contains(&service.as_str()) {
            report.flag(
                owner,
                &label,
                format!("wildcard action \"{a}\" on data service {service}"),
            );
        }
    }
    let scoped: Vec<&String> = actions.iter().filter(|a| !unscoped(a)).collect();
    if scoped.is_empty() {
        return;
    }
    let resources: Vec<&Value> = match &st["Resource"] {
        Value::Array(a) => a.iter().collect(),
        Value::Null => vec![],
        other => vec![other],
    };
    for r in resources {
        match evaluate(r, stack) {
            Ok(values) => {
                for v in values.iter().filter(|v| wildcard_resource(v)) {
                    report.flag(
                        owner,
                        &label,
                        format!("wildcard resource \"{v}\" (from {r}) for {scoped:?}"),
                    );
                }
            }
            Err(why) => report.flag(owner, &label, format!("resource {r}: {why}")),
        }
    }
}

/// Names a SAM policy-template parameter refers to: all must be the stack's
/// own resources.
fn check_sam_parameter(stack: &Stack<'_>, v: &Value) -> Result<(), String> {
    let own = |id: &str| {
        if stack.is_resource(id) {
            Ok(())
        } else {
            Err(format!("{id} is not a resource of this stack"))
        }
    };
    match v {
        Value::Object(o) if o.len() == 1 => {
            let (f, args) = o.iter().next().unwrap();
            match f.as_str() {
                "Ref" => own(&scalar_text(args)),
                "Fn::GetAtt" => match args {
                    Value::Array(a) if !a.is_empty() => own(&scalar_text(&a[0])),
                    Value::String(s) => own(s.split('.').next().unwrap_or(s)),
                    other => Err(format!("Fn::GetAtt of {other}")),
                },
                _ => Err(format!("{v} is not a Ref or Fn::GetAtt of an own resource")),
            }
        }
        Value::String(s) if s.contains('*') => Err(format!("\"{s}\" is a wildcard")),
        other => Err(format!(
            "{other} is not a Ref or Fn::GetAtt of an own resource"
        )),
    }
}

/// SAM `Policies`: a managed policy name or ARN, an inline policy document,
/// or SAM policy templates, alone or in a list.
fn check_sam_policies(stack: &Stack<'_>, owner: &str, policies: &Value, report: &mut Report) {
    let items: Vec<&Value> = match policies {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    for (i, p) in items.into_iter().enumerate() {
        match p {
            Value::String(name) => report.flag(
                owner,
                &format!("Policies[{i}]"),
                format!("managed policy \"{name}\": its statements are not in the template"),
            ),
            Value::Object(doc) if doc.contains_key("Statement") => {
                for (j, st) in statements(p).into_iter().enumerate() {
                    check_statement(stack, owner, j, st, report);
                }
            }
            Value::Object(templates) => {
                for (name, params) in templates {
                    *report.statements.entry(owner.to_string()).or_default() += 1;
                    report.actions.insert(format!("sam:{name}"));
                    for (param, v) in params.as_object().into_iter().flatten() {
                        if let Err(why) = check_sam_parameter(stack, v) {
                            report.flag(
                                owner,
                                name,
                                format!("SAM policy parameter {param}: {why}"),
                            );
                        }
                    }
                }
            }
            other => report.flag(
                owner,
                &format!("Policies[{i}]"),
                format!("unreadable policy {other}"),
            ),
        }
    }
}

fn check_template(t: &Value, params: Params) -> Report {
    let stack = Stack::new(t, params);
    let by_role = functions_by_role(t);
    let mut report = Report::default();
    for (id, r) in stack.resources {
        let kind = r["Type"].as_str().unwrap_or("");
        let props = &r["Properties"];
        match kind {
            "AWS::Serverless::Function" | "AWS::Serverless::StateMachine" => {
                let owner = format!("function {id}");
                if let Some(p) = props.get("Policies") {
                    check_sam_policies(&stack, &owner, p, &mut report);
                }
            }
            "AWS::IAM::Role" => {
                let owner = match by_role.get(id) {
                    Some(fs) => format!("function {} (role {id})", fs.join(", ")),
                    None => format!("role {id}"),
                };
                for arn in props["ManagedPolicyArns"].as_array().into_iter().flatten() {
                    report.flag(
                        &owner,
                        "ManagedPolicyArns",
                        format!("managed policy {arn}: its statements are not in the template"),
                    );
                }
                for p in props["Policies"].as_array().into_iter().flatten() {
                    for (j, st) in statements(&p["PolicyDocument"]).into_iter().enumerate() {
                        check_statement(&stack, &owner, j, st, &mut report);
                    }
                }
            }
            _ if props.get("PolicyDocument").is_some() => {
                let owner = format!("{id} ({kind})");
                for (j, st) in statements(&props["PolicyDocument"]).into_iter().enumerate() {
                    check_statement(&stack, &owner, j, st, &mut report);
                }
            }
            _ => {}
        }
    }
    report
}

fn functions(t: &Value) -> Vec<String> {
    t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(id, _)| id.clone())
        .collect()
}

// ------------------------------------------------------------- the real templates

#[test]
fn committed_template_grants_no_wildcard_on_a_data_service() {
    let report = check_template(&committed_template(), Params::Trusted);
    assert!(
        report.violations.is_empty(),
        "{COMMITTED}:\n{}",
        report.listing()
    );
}

#[test]
fn second_spec_template_grants_no_wildcard_on_a_data_service() {
    let report = check_template(&second_spec_template(), Params::Trusted);
    assert!(
        report.violations.is_empty(),
        "rendering of {SECOND_SPEC}:\n{}",
        report.listing()
    );
}

/// The check is not vacuous on the real templates: every function's grants
/// are found and walked, and they include the data services.
#[test]
fn every_function_of_both_templates_has_its_statements_walked() {
    for (name, t) in [
        (COMMITTED, committed_template()),
        (SECOND_SPEC, second_spec_template()),
    ] {
        let report = check_template(&t, Params::Trusted);
        let fs = functions(&t);
        assert!(fs.len() >= 3, "{name}: functions {fs:?}");
        for f in &fs {
            let walked: usize = report
                .statements
                .iter()
                .filter(|(owner, _)| {
                    owner.starts_with("function ")
                        && owner["function ".len()..]
                            .split(" (role")
                            .next()
                            .unwrap()
                            .split(", ")
                            .any(|x| x == f)
                })
                .map(|(_, n)| n)
                .sum();
            assert!(
                walked > 0,
                "{name}: no IAM statement walked for function {f}"
            );
        }
        for service in ["dynamodb", "sqs", "s3", "secretsmanager"] {
            assert!(
                report.actions.iter().any(|a| service_of(a) == service),
                "{name}: no {service} action seen in {:?}",
                report.actions
            );
        }
    }
}

/// A parameter that reaches an IAM resource must not be able to widen it:
/// each `String` parameter without `AllowedValues` or `AllowedPattern` is
/// taken to be `*` at deploy time.
///
/// `SecretsId` reaches the `ReadSecrets` statement of every role (as
/// `Ref: SecretsId` when it is an ARN, as `secret:${SecretsId}-??????` when
/// it is a name): its `AllowedPattern` is what keeps `SecretsId=*` out.
#[test]
fn no_deploy_parameter_can_widen_an_iam_resource_to_a_wildcard() {
    for (name, t) in [
        (COMMITTED, committed_template()),
        (SECOND_SPEC, second_spec_template()),
    ] {
        let report = check_template(&t, Params::WorstCase);
        assert!(
            report.violations.is_empty(),
            "{name}:\n{}",
            report.listing()
        );
    }
}

// ------------------------------------------------------------- the checker itself

fn check_yaml(text: &str) -> Report {
    check_template(&parse_template(text), Params::Trusted)
}

const SYNTHETIC_HEAD: &str = r#"
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Anything:
    Type: String
Resources:
  Table:
    Type: AWS::DynamoDB::Table
  Queue:
    Type: AWS::SQS::Queue
  Bucket:
    Type: AWS::S3::Bucket
  Logs:
    Type: AWS::Logs::LogGroup
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      Role: !GetAtt WorkerRole.Arn
  WorkerRole:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: p
          PolicyDocument:
            Statement:
"#;

/// A synthetic template whose one role (used by function `Worker`) has
/// these statements (YAML, indented for the `Statement:` list).
fn with_statements(statements: &str) -> String {
    let body: String = statements
        .lines()
        .map(|l| format!("              {l}\n"))
        .collect();
    format!("{SYNTHETIC_HEAD}{body}")
}

#[test]
fn the_checker_flags_dynamodb_star_on_resource_star_naming_function_statement_and_value() {
    let report = check_yaml(&with_statements(
        "- Sid: EverythingEverywhere\n  Effect: Allow\n  Action: dynamodb:*\n  Resource: \"*\"",
    ));
    let v = &report.violations;
    assert_eq!(v.len(), 2, "{}", report.listing());
    for x in v {
        assert_eq!(x.owner, "function Worker (role WorkerRole)");
        assert_eq!(x.statement, "EverythingEverywhere");
    }
    assert!(
        v.iter().any(|x| x.what.contains("\"dynamodb:*\"")),
        "{}",
        report.listing()
    );
    assert!(
        v.iter().any(|x| x.what.contains("wildcard resource \"*\"")),
        "{}",
        report.listing()
    );
    let line = v[0].to_string();
    assert!(
        line.starts_with("function Worker (role WorkerRole): statement EverythingEverywhere: "),
        "{line}"
    );
}

#[test]
fn the_checker_flags_each_kind_of_wildcard_on_a_data_service() {
    // (statement body, what the violation must mention)
    let cases = [
        ("Action: \"*\"\n  Resource: !GetAtt Table.Arn", "action \"*\""),
        ("Action: sqs:*\n  Resource: !GetAtt Queue.Arn", "\"sqs:*\""),
        ("Action: s3:Get*\n  Resource: !Sub \"${Bucket.Arn}/*\"", "\"s3:Get*\""),
        ("Action: kms:*\n  Resource: arn:aws:kms:us-east-1:1:key/k", "\"kms:*\""),
        ("Action: ssm:GetParameter*\n  Resource: arn:aws:ssm:us-east-1:1:parameter/p", "\"ssm:GetParameter*\""),
        ("Action: [logs:GetLogEvents, logs:Filter*]\n  Resource: !GetAtt Logs.Arn", "\"logs:Filter*\""),
        ("Action: secretsmanager:*\n  Resource: arn:aws:secretsmanager:us-east-1:1:secret:s", "\"secretsmanager:*\""),
        ("Action: dynamodb:GetItem\n  Resource: arn:aws:dynamodb:*:*:table/*", "arn:aws:dynamodb:*:*:table/*"),
        (
            "Action: dynamodb:Query\n  Resource: !Sub \"arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/*\"",
            "table/*",
        ),
        (
            "Action: secretsmanager:GetSecretValue\n  Resource: !Sub \"arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:*\"",
            "secret:*",
        ),
        ("Action: s3:GetObject\n  Resource: \"arn:aws:s3:::*\"", "arn:aws:s3:::*"),
        ("Action: sqs:SendMessage\n  Resource: arn:aws:sqs:us-east-1:123456789012:*", "123456789012:*"),
        ("Action: logs:GetLogEvents\n  Resource: arn:aws:logs:us-east-1:1:log-group:*", "log-group:*"),
        ("Action: kms:Decrypt\n  Resource: [!GetAtt Table.Arn, \"*\"]", "wildcard resource \"*\""),
        (
            "Action: s3:GetObject\n  Resource: !If [Cond, !GetAtt Bucket.Arn, \"*\"]",
            "wildcard resource \"*\"",
        ),
        ("Action: sqs:SendMessage\n  Resource: !GetAtt Elsewhere.Arn", "not a resource of this stack"),
        ("NotAction: iam:*\n  Resource: \"*\"", "NotAction"),
        ("Action: s3:GetObject\n  NotResource: !GetAtt Bucket.Arn", "NotResource"),
        ("Action: lambda:InvokeFunction\n  Resource: \"*\"", "wildcard resource \"*\""),
        ("Action: [xray:PutTraceSegments, s3:GetObject]\n  Resource: \"*\"", "[\"s3:GetObject\"]"),
    ];
    for (body, expected) in cases {
        let report = check_yaml(&with_statements(&format!(
            "- Sid: S\n  Effect: Allow\n  {body}"
        )));
        assert!(
            report
                .violations
                .iter()
                .any(|v| v.statement == "S" && v.what.contains(expected)),
            "{body}\nexpected a violation mentioning {expected:?}, got:\n{}",
            report.listing()
        );
    }
}

#[test]
fn the_checker_passes_scoped_grants_denies_and_the_allow_listed_unscoped_actions() {
    let report = check_yaml(&with_statements(
        r#"- Sid: Scoped
  Effect: Allow
  Action: [dynamodb:GetItem, dynamodb:Query]
  Resource:
    - !GetAtt Table.Arn
    - !Sub "${Table.Arn}/index/*"
- Sid: ObjectsOfOwnBucket
  Effect: Allow
  Action: [s3:GetObject, s3:PutObject]
  Resource: !Sub "${Bucket.Arn}/*"
- Sid: OneSecret
  Effect: Allow
  Action: secretsmanager:GetSecretValue
  Resource: !Sub "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${Anything}-??????"
- Sid: SpecObject
  Effect: Allow
  Action: s3:GetObject
  Resource:
    Fn::Sub:
      - "arn:${AWS::Partition}:s3:::${Object}"
      - Object: !Select [1, !Split ["s3://", !Ref Anything]]
- Sid: OwnStreams
  Effect: Allow
  Action: [logs:CreateLogStream, logs:PutLogEvents]
  Resource: !Sub "arn:aws:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/lambda/worker:*"
- Sid: Traces
  Effect: Allow
  Action: [xray:PutTraceSegments, xray:PutTelemetryRecords, cloudwatch:PutMetricData]
  Resource: "*"
- Sid: Guard
  Effect: Deny
  Action: s3:*
  Resource: "*""#,
    ));
    assert!(report.violations.is_empty(), "{}", report.listing());
    assert_eq!(report.statements.values().sum::<usize>(), 6);
}

#[test]
fn sam_policy_templates_must_name_the_stacks_own_resources() {
    let report = check_yaml(
        r#"
Resources:
  Table:
    Type: AWS::DynamoDB::Table
  Queue:
    Type: AWS::SQS::Queue
  Good:
    Type: AWS::Serverless::Function
    Properties:
      Policies:
        - DynamoDBCrudPolicy:
            TableName: !Ref Table
        - SQSSendMessagePolicy:
            QueueName: !GetAtt Queue.QueueName
  Bad:
    Type: AWS::Serverless::Function
    Properties:
      Policies:
        - SQSPollerPolicy:
            QueueName: "*"
        - DynamoDBReadPolicy:
            TableName: someone-elses-table
        - S3ReadPolicy:
            BucketName: !Ref Missing
        - AmazonDynamoDBFullAccess
        - Statement:
            - Effect: Allow
              Action: dynamodb:*
              Resource: !GetAtt Table.Arn
"#,
    );
    let v = &report.violations;
    assert!(
        v.iter().all(|x| x.owner == "function Bad"),
        "{}",
        report.listing()
    );
    for (statement, expected) in [
        ("SQSPollerPolicy", "\"*\" is a wildcard"),
        ("DynamoDBReadPolicy", "not a Ref or Fn::GetAtt"),
        ("S3ReadPolicy", "Missing is not a resource of this stack"),
        ("Policies[3]", "managed policy \"AmazonDynamoDBFullAccess\""),
        ("#1", "\"dynamodb:*\""),
    ] {
        assert!(
            v.iter()
                .any(|x| x.statement == statement && x.what.contains(expected)),
            "expected {statement}: {expected}, got:\n{}",
            report.listing()
        );
    }
    assert_eq!(v.len(), 5, "{}", report.listing());
}

#[test]
fn a_role_with_managed_policy_arns_is_refused() {
    let report = check_yaml(
        r#"
Resources:
  R:
    Type: AWS::IAM::Role
    Properties:
      ManagedPolicyArns:
        - arn:aws:iam::aws:policy/AmazonS3FullAccess
"#,
    );
    assert_eq!(report.violations.len(), 1, "{}", report.listing());
    assert!(report.violations[0]
        .to_string()
        .contains("AmazonS3FullAccess"));
}

#[test]
fn cloudformation_short_tags_parse_as_their_long_forms() {
    let t = parse_template(
        r#"
a: !Ref Table
b: !GetAtt Queue.Arn
c: !Sub "${Bucket.Arn}/*"
d: !If [Cond, !Ref X, !Ref "AWS::NoValue"]
e: !Select [1, !Split ["s3://", !Ref Uri]]
f: !Join [":", [a, b]]
"#,
    );
    assert_eq!(t["a"], json!({"Ref": "Table"}));
    assert_eq!(t["b"], json!({"Fn::GetAtt": ["Queue", "Arn"]}));
    assert_eq!(t["c"], json!({"Fn::Sub": "${Bucket.Arn}/*"}));
    assert_eq!(
        t["d"],
        json!({"Fn::If": ["Cond", {"Ref": "X"}, {"Ref": "AWS::NoValue"}]})
    );
    assert_eq!(
        t["e"],
        json!({"Fn::Select": [1, {"Fn::Split": ["s3://", {"Ref": "Uri"}]}]})
    );
    assert_eq!(t["f"], json!({"Fn::Join": [":", ["a", "b"]]}));
}

#[test]
fn a_parameter_without_a_pattern_is_taken_as_a_wildcard_in_the_worst_case() {
    let text = with_statements(
        "- Sid: OneSecret\n  Effect: Allow\n  Action: secretsmanager:GetSecretValue\n  Resource: !Sub \"arn:aws:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${Anything}-??????\"",
    );
    let t = parse_template(&text);
    assert!(check_template(&t, Params::Trusted).violations.is_empty());
    let worst = check_template(&t, Params::WorstCase);
    assert_eq!(worst.violations.len(), 1, "{}", worst.listing());
    assert!(worst.violations[0].what.contains("secret:*-??????"));
}

/// The committed template with one grant widened (an action made `*`, a data
/// action put on the X-Ray statement's `Resource: "*"`) fails the check.
#[test]
fn a_wildcard_put_into_the_committed_template_is_caught() {
    let text = std::fs::read_to_string(repo(COMMITTED)).unwrap();
    for (from, to, expected) in [
        (
            "\"dynamodb:GetItem\"",
            "\"dynamodb:*\"",
            "action \"dynamodb:*\"",
        ),
        (
            "\"xray:PutTraceSegments\"",
            "\"s3:GetObject\"",
            "wildcard resource \"*\"",
        ),
    ] {
        assert!(text.contains(from), "{from} not in {COMMITTED}");
        let report = check_yaml(&text.replacen(from, to, 1));
        assert!(
            report
                .violations
                .iter()
                .any(|v| v.owner.starts_with("function ") && v.what.contains(expected)),
            "{from} -> {to}: expected {expected:?}, got:\n{}",
            report.listing()
        );
    }
}
