use super::*;

fn answer(http: u16, headers: &[(&'static str, &'static str)]) -> http::Response<()> {
    let mut builder = http::Response::builder().status(http);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap()
}

fn classify(c: &GrpcClassifier, response: &http::Response<()>) -> Outcome {
    Classify::<_, ()>::classify(c, Ok(response))
}

#[test]
fn every_code_round_trips_through_its_number_name_and_header() {
    for (number, code) in ALL.into_iter().enumerate() {
        assert_eq!(code.as_i32(), number as i32);
        assert_eq!(GrpcCode::from_i32(number as i32), Some(code));
        assert_eq!(code.as_str().parse::<GrpcCode>(), Ok(code));
        assert_eq!(
            code.as_str().to_ascii_lowercase().parse::<GrpcCode>(),
            Ok(code)
        );
        assert_eq!(code.header_value(), number.to_string().as_str());
    }
    assert_eq!(GrpcCode::from_i32(17), None);
    assert_eq!(GrpcCode::from_i32(-1), None);
    assert_eq!("SLOW".parse::<GrpcCode>(), Err(UnknownGrpcCode));
    assert_eq!("17".parse::<GrpcCode>(), Err(UnknownGrpcCode));
}

#[test]
fn the_default_classifier_retries_unavailable_and_resource_exhausted_only() {
    let c = GrpcClassifier::new();
    for code in ALL {
        let outcome = c.status(code, None);
        let expected = match code {
            GrpcCode::Ok => Outcome::Success,
            GrpcCode::Unavailable | GrpcCode::ResourceExhausted => Outcome::RETRYABLE,
            GrpcCode::Unknown
            | GrpcCode::DeadlineExceeded
            | GrpcCode::Unimplemented
            | GrpcCode::Internal
            | GrpcCode::DataLoss => Outcome::NOT_RETRYABLE,
            _ => Outcome::Success,
        };
        assert_eq!(outcome, expected, "{code}");
    }
}

#[test]
fn listed_codes_are_retried_and_a_replaced_set_drops_the_defaults() {
    let c = GrpcClassifier::new().retry_on(GrpcCode::Aborted);
    assert_eq!(c.status(GrpcCode::Aborted, None), Outcome::RETRYABLE);
    assert_eq!(c.status(GrpcCode::Unavailable, None), Outcome::RETRYABLE);
    let only_internal = GrpcCodes::EMPTY.with(GrpcCode::Internal);
    let c = GrpcClassifier::new().with_retryable(only_internal);
    assert_eq!(c.status(GrpcCode::Internal, None), Outcome::RETRYABLE);
    // still a server failure, no longer retried
    assert_eq!(
        c.status(GrpcCode::Unavailable, None),
        Outcome::NOT_RETRYABLE
    );
    assert_eq!(c.retryable(), only_internal);
}

#[test]
fn a_pushback_that_says_do_not_retry_makes_the_failure_final() {
    let c = GrpcClassifier::new();
    for value in ["-1", "soon", "", "1.5", "+5"] {
        let r = answer(
            200,
            &[("grpc-status", "14"), ("grpc-retry-pushback-ms", value)],
        );
        assert_eq!(classify(&c, &r), Outcome::NOT_RETRYABLE, "{value:?}");
        assert_eq!(Classify::<_, ()>::retry_after(&c, Ok(&r)), None);
    }
    let r = answer(
        200,
        &[("grpc-status", "8"), ("grpc-retry-pushback-ms", "250")],
    );
    assert_eq!(classify(&c, &r), Outcome::RETRYABLE);
    assert_eq!(
        Classify::<_, ()>::retry_after(&c, Ok(&r)),
        Some(Duration::from_millis(250))
    );
}

#[test]
fn pushback_values_parse_without_panicking() {
    let read = |v: &str| Pushback::parse(&HeaderValue::from_str(v).unwrap());
    assert_eq!(read("0"), Pushback::After(Duration::ZERO));
    assert_eq!(read("1000"), Pushback::After(Duration::from_secs(1)));
    // 24 digits saturate; 25 are malformed
    assert_eq!(
        read(&"9".repeat(24)),
        Pushback::After(Duration::from_millis(u64::MAX))
    );
    assert_eq!(read(&"9".repeat(25)), Pushback::DoNotRetry);
    assert_eq!(read(" 5"), Pushback::DoNotRetry);
}

#[test]
fn responses_without_grpc_status_are_classified_as_http() {
    let c = GrpcClassifier::new();
    assert_eq!(classify(&c, &answer(200, &[])), Outcome::Success);
    assert_eq!(classify(&c, &answer(503, &[])), Outcome::RETRYABLE);
    assert_eq!(classify(&c, &answer(502, &[])), Outcome::RETRYABLE);
    assert_eq!(classify(&c, &answer(501, &[])), Outcome::NOT_RETRYABLE);
    assert_eq!(classify(&c, &answer(404, &[])), Outcome::Success);
    let shed = answer(503, &[("retry-after", "2")]);
    assert_eq!(
        Classify::<_, ()>::retry_after(&c, Ok(&shed)),
        Some(Duration::from_secs(2))
    );
    let err: Result<&http::Response<()>, &&str> = Err(&"reset");
    assert_eq!(c.classify(err), Outcome::RETRYABLE);
}

#[test]
fn a_grpc_status_wins_over_the_http_status_and_bad_values_read_unknown() {
    let c = GrpcClassifier::new();
    assert_eq!(
        classify(&c, &answer(200, &[("grpc-status", "0")])),
        Outcome::Success
    );
    for bad in ["99", "-3", "x", "12345678901"] {
        let r = answer(200, &[("grpc-status", bad)]);
        assert_eq!(grpc_status(r.headers()), Some(GrpcCode::Unknown), "{bad}");
        assert_eq!(classify(&c, &r), Outcome::NOT_RETRYABLE);
    }
}

#[test]
fn codes_and_sets_read_from_config_files() {
    #[derive(Deserialize, Serialize)]
    struct Table {
        retry_on: GrpcCodes,
    }
    let table: Table = toml::from_str(r#"retry_on = ["aborted", "UNAVAILABLE", 13]"#).unwrap();
    let expected: GrpcCodes = [GrpcCode::Aborted, GrpcCode::Unavailable, GrpcCode::Internal]
        .into_iter()
        .collect();
    assert_eq!(table.retry_on, expected);
    let written = toml::to_string(&table).unwrap();
    assert_eq!(
        written.trim(),
        r#"retry_on = ["ABORTED", "INTERNAL", "UNAVAILABLE"]"#
    );
    let err = toml::from_str::<Table>(r#"retry_on = ["SLOW"]"#)
        .err()
        .unwrap();
    assert!(err.to_string().contains("gRPC status code"), "{err}");
    assert!(toml::from_str::<Table>("retry_on = [17]").is_err());
    assert_eq!(
        format!("{:?}", GrpcCodes::RETRYABLE),
        "{ResourceExhausted, Unavailable}"
    );
    assert_eq!(
        GrpcCodes::RETRYABLE.without(GrpcCode::Unavailable),
        GrpcCodes::EMPTY.with(GrpcCode::ResourceExhausted)
    );
}
