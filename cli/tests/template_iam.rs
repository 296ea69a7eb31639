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

#[path = "template_iam/tests.rs"]
mod tests;
