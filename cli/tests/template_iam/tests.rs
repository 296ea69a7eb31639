//! The checker's tests: the real templates pass, and every kind of
//! wildcard it must catch is caught.

use super::*;

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
