//! SCIM 2.0 at /scim/v2 end to end on SQLite and PostgreSQL: discovery, CRUD, every filter
//! operator translated to SQL, sorting and paging, PATCH in every form, ETags, errors with
//! their scimType, Bulk, the exact requests Microsoft Entra ID and Okta send, termination
//! through `active: false` (sessions and decisions refused before the response returns),
//! scope isolation, and bad input that writes nothing.

use super::*;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

impl Harness {
    async fn token_with(&self, name: &str, scopes: &[&str]) -> String {
        let t = self.operator_token(json!({ "name": name, "scopes": scopes })).await;
        assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
        t.body["secret"].as_str().unwrap().to_owned()
    }

    async fn scim_req(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.http.request(method, self.url(&format!("/scim/v2{path}"))).bearer_auth(token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/scim+json").body(serde_json::to_vec(&b).unwrap());
        }
        Resp::read(req.send().await.expect("sent")).await
    }

    async fn scim(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.scim_req(token, method, path, body, &[]).await
    }
}

impl Resp {
    /// Asserts a SCIM error of this status and scimType.
    fn scim_error(&self, status: u16, scim_type: Option<&str>) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        assert_eq!(self.body["schemas"][0], ERROR, "{}", self.text);
        assert_eq!(self.body["status"], status.to_string(), "{}", self.text);
        match scim_type {
            Some(t) => assert_eq!(self.body["scimType"], t, "{}", self.text),
            None => assert!(self.body.get("scimType").is_none(), "{}", self.text),
        }
        &self.body
    }
}

fn user_body(name: &str) -> Value {
    json!({ "schemas": [USER], "userName": name, "active": true })
}

fn patch(ops: Value) -> Value {
    json!({ "schemas": [PATCH], "Operations": ops })
}

fn ids_of(r: &Resp) -> Vec<String> {
    r.body["Resources"].as_array().unwrap_or(&Vec::new()).iter().map(|x| x["id"].as_str().unwrap().to_owned()).collect()
}

async fn scim_discovery(h: &Harness) {
    let t = h.token_with("entra", &["scim"]).await;
    let c = h.scim(&t, Method::GET, "/ServiceProviderConfig", None).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    assert_eq!(c.header("content-type"), Some("application/scim+json"));
    assert_eq!(c.body["patch"]["supported"], true);
    assert_eq!(c.body["bulk"]["maxOperations"], 100);
    assert_eq!(c.body["etag"]["supported"], true);
    let rt = h.scim(&t, Method::GET, "/ResourceTypes", None).await;
    assert_eq!(rt.body["totalResults"], 2, "{}", rt.text);
    assert_eq!(h.scim(&t, Method::GET, "/ResourceTypes/User", None).await.body["schemaExtensions"][0]["schema"], ENT);
    let s = h.scim(&t, Method::GET, "/Schemas", None).await;
    assert_eq!(s.body["totalResults"], 3);
    let u = h.scim(&t, Method::GET, &format!("/Schemas/{USER}"), None).await;
    let attrs = u.body["attributes"].as_array().unwrap();
    let user_name = attrs.iter().find(|a| a["name"] == "userName").unwrap();
    assert_eq!(user_name["caseExact"], false);
    assert_eq!(user_name["uniqueness"], "server");
    h.scim(&t, Method::GET, "/Schemas/urn:nope", None).await.scim_error(404, None);
    for path in ["/ServiceProviderConfig", "/ResourceTypes", "/Schemas", "/Schemas/x"] {
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            h.scim(&t, m, path, Some(json!({}))).await.scim_error(405, None);
        }
    }
    h.scim(&t, Method::GET, "/Me", None).await.scim_error(501, None);
    h.scim(&t, Method::GET, "/Nope", None).await.scim_error(404, None);
}

async fn scim_users_crud(h: &Harness) {
    let t = h.token_with("okta-prod", &["scim"]).await;
    let body = json!({
        "schemas": [USER, ENT],
        "userName": "Barbara.Jensen@example.com",
        "externalId": "00u1abc",
        "name": { "givenName": "Barbara", "familyName": "Jensen" },
        "emails": [{ "value": "bjensen@example.com", "type": "work", "primary": true }],
        "title": "Charge Nurse",
        "userType": "Employee",
        "active": true,
        "password": "never-stored-1",
        ENT: { "employeeNumber": "E-1001", "department": "Cardiology" },
    });
    let r = h.scim(&t, Method::POST, "/Users", Some(body.clone())).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let uid = id(&r.body);
    assert!(r.header("location").unwrap().ends_with(&format!("/scim/v2/Users/{uid}")));
    assert_eq!(r.header("etag"), Some("W/\"2\""), "created, then verified and activated");
    assert_eq!(r.body["meta"]["version"], "W/\"2\"");
    assert_eq!(r.body["active"], true);
    assert!(r.body.get("displayName").is_none(), "not sent, not invented: {}", r.text);
    assert!(r.body.get("password").is_none());
    assert!(!r.text.contains("never-stored-1"));
    // The directory user it maps to: active, verified by the connector, HR attributes.
    let d = h.get(&format!("/api/v1/users/{uid}")).await;
    assert_eq!(d.body["display_name"], "Barbara Jensen", "the directory derives one from name");
    assert_eq!(d.body["status"], "active");
    assert_eq!(d.body["email"], "bjensen@example.com");
    assert_eq!(d.body["hr"]["employee_id"], "E-1001");
    assert_eq!(d.body["hr"]["department"], "Cardiology");
    assert_eq!(d.body["hr"]["title"], "Charge Nurse");
    assert_eq!(d.body["hr"]["employment_type"], "employee");
    assert_eq!(d.body["verification"]["method"], "scim:okta-prod");
    assert!(d.body["verification"]["verified_by"].as_str().unwrap().starts_with("token:"));
    // Audit events name the connector.
    let ev = h.events(&format!("target=user:{uid}")).await;
    let create = ev.iter().find(|e| e["action"] == "user.create").unwrap();
    assert_eq!(create["details"]["scim"]["connector"], "okta-prod");
    assert_eq!(create["details"]["scim"]["operation"], "create");
    assert!(ev.iter().any(|e| e["action"] == "user.verify_identity"));

    // Okta relies on 409 uniqueness for a duplicate userName (any case).
    let mut dup = body.clone();
    dup["userName"] = json!("barbara.jensen@EXAMPLE.com");
    h.scim(&t, Method::POST, "/Users", Some(dup)).await.scim_error(409, Some("uniqueness"));

    let g = h.scim(&t, Method::GET, &format!("/Users/{uid}"), None).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.body["name"]["givenName"], "Barbara");
    assert_eq!(g.body[ENT]["department"], "Cardiology");
    assert_eq!(g.body["externalId"], "00u1abc");

    // Okta: PUT for profile updates (the whole resource).
    let mut put = body.clone();
    put["name"]["familyName"] = json!("Jensen-Smith");
    put["title"] = json!("Nurse Manager");
    put[ENT]["department"] = json!("ICU");
    let p = h.scim(&t, Method::PUT, &format!("/Users/{uid}"), Some(put)).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert_eq!(p.body["name"]["familyName"], "Jensen-Smith");
    assert_eq!(p.body["active"], true);
    let d = h.get(&format!("/api/v1/users/{uid}")).await;
    assert_eq!(d.body["hr"]["department"], "ICU");
    assert_eq!(d.body["hr"]["title"], "Nurse Manager");

    // attributes= on a write response.
    let p = h
        .scim(
            &t,
            Method::PATCH,
            &format!("/Users/{uid}?attributes=userName"),
            Some(patch(json!([{ "op": "replace", "path": "nickName", "value": "Babs" }]))),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert!(p.body.get("nickName").is_none() && p.body["userName"] == "Barbara.Jensen@example.com", "{}", p.text);

    // A PUT that leaves the HR attributes out keeps them; a PATCH remove clears them.
    let p = h
        .scim(
            &t,
            Method::PUT,
            &format!("/Users/{uid}"),
            Some(json!({ "schemas": [USER], "userName": "Barbara.Jensen@example.com", "active": true })),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert_eq!(p.body[ENT]["department"], "ICU", "{}", p.text);
    let p = h
        .scim(
            &t,
            Method::PATCH,
            &format!("/Users/{uid}"),
            Some(patch(json!([{ "op": "remove", "path": format!("{ENT}:department") }]))),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert!(p.body[ENT].get("department").is_none(), "{}", p.text);
    assert!(h.get(&format!("/api/v1/users/{uid}")).await.body["hr"].get("department").is_none());

    // DELETE: 204, gone from SCIM, tombstone kept, username free for a new id.
    let del = h.scim(&t, Method::DELETE, &format!("/Users/{uid}"), None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.text);
    h.scim(&t, Method::GET, &format!("/Users/{uid}"), None).await.scim_error(404, None);
    h.scim(&t, Method::DELETE, &format!("/Users/{uid}"), None).await.scim_error(404, None);
    assert!(h.events(&format!("target=user:{uid}&action=user.delete")).await.len() == 1);
    let again = h.scim(&t, Method::POST, "/Users", Some(body)).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    assert_ne!(id(&again.body), uid);
}

async fn scim_filters(h: &Harness) {
    let t = h.token_with("entra", &["scim"]).await;
    let people = [
        ("alice@x.org", "Alice", "Zeta", "ext-A", "work", "alice@x.org", "Cardiology", "E1", true),
        ("bob@x.org", "Bob", "Young", "ext-b", "home", "bob.home@y.net", "Radiology", "E2", true),
        ("carol@x.org", "Carol", "Xu", "EXT-C", "work", "carol_1%@x.org", "Cardiology", "E3", false),
        ("dave@x.org", "Dave", "Young", "ext-d", "work", "dave@x.org", "Pharmacy", "E4", true),
    ];
    let mut ids = Vec::new();
    for (u, g, f, ext, ty, mail, dept, emp, active) in people {
        let r = h
            .scim(
                &t,
                Method::POST,
                "/Users",
                Some(json!({
                    "schemas": [USER, ENT], "userName": u, "externalId": ext, "active": active,
                    "name": { "givenName": g, "familyName": f }, "displayName": format!("{g} {f}"),
                    "emails": [{ "value": mail, "type": ty, "primary": true }],
                    ENT: { "department": dept, "employeeNumber": emp },
                })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        ids.push(id(&r.body));
    }
    let (a, b, c, d) = (ids[0].clone(), ids[1].clone(), ids[2].clone(), ids[3].clone());
    let q = |f: &str| format!("/Users?filter={}&sortBy=userName", urlencode(f));
    check(h, &t, r#"userName eq "ALICE@x.org""#, vec![&a]).await;
    check(h, &t, r#"USERNAME Eq "alice@x.org""#, vec![&a]).await;
    check(h, &t, r#"userName ne "alice@x.org""#, vec![&b, &c, &d]).await;
    check(h, &t, r#"userName co "L""#, vec![&a, &c]).await;
    check(h, &t, r#"userName sw "da""#, vec![&d]).await;
    check(h, &t, r#"userName ew "b@x.org""#, vec![&b]).await;
    check(h, &t, r#"userName gt "bob@x.org""#, vec![&c, &d]).await;
    check(h, &t, r#"userName ge "bob@x.org""#, vec![&b, &c, &d]).await;
    check(h, &t, r#"userName lt "bob@x.org""#, vec![&a]).await;
    check(h, &t, r#"userName le "bob@x.org""#, vec![&a, &b]).await;
    check(h, &t, r#"nickName pr"#, vec![]).await;
    check(h, &t, r#"name.familyName pr"#, vec![&a, &b, &c, &d]).await;
    // caseExact: externalId is case-sensitive, userName is not.
    check(h, &t, r#"externalId eq "ext-a""#, vec![]).await;
    check(h, &t, r#"externalId eq "ext-A""#, vec![&a]).await;
    check(h, &t, r#"externalId sw "ext-""#, vec![&a, &b, &d]).await;
    check(h, &t, r#"externalId co "XT""#, vec![&c]).await;
    check(h, &t, r#"externalId ew "-d""#, vec![&d]).await;
    // LIKE wildcards in values are literal.
    check(h, &t, r#"emails.value co "_1%""#, vec![&c]).await;
    check(h, &t, r#"emails.value co "%""#, vec![&c]).await;
    // and / or / not with precedence and grouping.
    check(
        h,
        &t,
        r#"name.familyName eq "young" and name.givenName eq "bob" or userName eq "alice@x.org""#,
        vec![&a, &b],
    )
    .await;
    check(h, &t, r#"name.familyName eq "young" and (name.givenName eq "bob" or userName eq "alice@x.org")"#, vec![&b])
        .await;
    check(h, &t, r#"not (name.familyName eq "young")"#, vec![&a, &c]).await;
    check(h, &t, r#"active eq true and not (emails[type eq "home"])"#, vec![&a, &d]).await;
    check(h, &t, r#"active eq false"#, vec![&c]).await;
    // Value paths, Entra's trailing form, extension URNs.
    check(h, &t, r#"emails[type eq "work" and value co "x.org"]"#, vec![&a, &c, &d]).await;
    check(h, &t, r#"emails[type eq "work"].value eq "dave@x.org""#, vec![&d]).await;
    check(h, &t, r#"emails[type eq "home" or primary eq false]"#, vec![&b]).await;
    check(
        h,
        &t,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "cardiology""#,
        vec![&a, &c],
    )
    .await;
    check(h, &t, r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "E4""#, vec![&d])
        .await;
    check(h, &t, r#"id eq "nope""#, vec![]).await;
    let idf = format!(r#"id eq "{b}""#);
    let r = h.scim(&t, Method::GET, &format!("/Users?filter={}", urlencode(&idf)), None).await;
    assert_eq!(ids_of(&r), vec![b.clone()]);
    check(h, &t, r#"meta.created gt "2000-01-01T00:00:00Z""#, vec![&a, &b, &c, &d]).await;
    check(h, &t, r#"meta.lastModified lt "2000-01-01T00:00:00Z""#, vec![]).await;
    check(h, &t, r#"meta.resourceType eq "User""#, vec![&a, &b, &c, &d]).await;
    // Entra's first probe: a random userName, no match.
    let r = h.scim(&t, Method::GET, &q(r#"userName eq "3f7c0a4e-9d4b-4c3a-8f61-3b2a1c0d9e8f""#), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["totalResults"], 0);
    assert_eq!(r.body["Resources"], json!([]));
    // Unknown attributes and malformed filters: 400 invalidFilter.
    for bad in [
        r#"nosuch eq "x""#,
        r#"userName xx "a""#,
        r#"(userName eq "a""#,
        r#"active gt true"#,
        r#"meta.created sw "2020""#,
        "emails[value eq \"x\"]]",
    ] {
        let r = h.scim(&t, Method::GET, &q(bad), None).await;
        r.scim_error(400, Some("invalidFilter"));
    }

    // Sorting (ties by id), paging, attributes, excludedAttributes.
    let r = h.scim(&t, Method::GET, "/Users?sortBy=name.familyName&sortOrder=descending", None).await;
    assert_eq!(
        ids_of(&r),
        vec![a.clone(), b.clone(), d.clone(), c.clone()],
        "Zeta, Young (ties by id), Xu: {}",
        r.text
    );
    let r = h.scim(&t, Method::GET, "/Users?sortBy=name.familyName&sortOrder=ascending", None).await;
    assert_eq!(ids_of(&r), vec![c.clone(), b.clone(), d.clone(), a.clone()]);
    let r = h.scim(&t, Method::GET, "/Users?sortBy=emails&count=2&startIndex=2", None).await;
    assert_eq!(r.body["totalResults"], 4);
    assert_eq!(r.body["startIndex"], 2);
    assert_eq!(r.body["itemsPerPage"], 2);
    assert_eq!(ids_of(&r), vec![b.clone(), c.clone()], "alice, bob.home, carol_1, dave: {}", r.text);
    let r = h.scim(&t, Method::GET, "/Users?count=0", None).await;
    assert_eq!(r.body["totalResults"], 4);
    assert_eq!(r.body["Resources"], json!([]));
    let r = h.scim(&t, Method::GET, "/Users?startIndex=10", None).await;
    assert_eq!(r.body["totalResults"], 4);
    assert_eq!(ids_of(&r).len(), 0);
    let r = h
        .scim(&t, Method::GET, "/Users?attributes=userName,name.givenName&filter=userName%20eq%20%22bob@x.org%22", None)
        .await;
    let u = &r.body["Resources"][0];
    assert_eq!(u["userName"], "bob@x.org");
    assert_eq!(u["name"], json!({ "givenName": "Bob" }));
    assert!(u.get("emails").is_none() && u["id"] == b.as_str(), "{u}");
    let r = h.scim(&t, Method::GET, &format!("/Users/{b}?excludedAttributes=emails,{ENT}"), None).await;
    assert!(
        r.body.get("emails").is_none() && r.body.get(ENT).is_none() && r.body["userName"] == "bob@x.org",
        "{}",
        r.text
    );
    h.scim(&t, Method::GET, "/Users?sortBy=nosuch", None).await.scim_error(400, Some("invalidValue"));
    h.scim(&t, Method::GET, "/Users?count=abc", None).await.scim_error(400, Some("invalidValue"));

    // POST /.search per type and at the root.
    let s = h
        .scim(
            &t,
            Method::POST,
            "/Users/.search",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "filter": "name.familyName eq \"Young\"", "sortBy": "userName", "attributes": ["userName"], "count": 1,
            })),
        )
        .await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.text);
    assert_eq!(s.body["totalResults"], 2);
    assert_eq!(ids_of(&s), vec![b.clone()]);
    let s = h
        .scim(&t, Method::POST, "/.search", Some(json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "userName sw \"a\"" })))
        .await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.text);
    assert_eq!(ids_of(&s), vec![a.clone()]);

    // Filters run in SQL on both stores (query plan), never as a scan in Rust.
    let caller = h.services.authenticate(&t, Default::default()).await.unwrap();
    let by = h.services.authorize::<wardkey_service::auth::Scim>(&caller, "test").await.unwrap();
    let plan = h.services.scim_explain_user_filter(&by, r#"userName eq "alice@x.org""#).await.unwrap().join("\n");
    assert!(plan.contains("users_username_live"), "{plan}");
    let plan = h
        .services
        .scim_explain_user_filter(&by, r#"emails[type eq "work" and value co "x"]"#)
        .await
        .unwrap()
        .join("\n");
    assert!(plan.to_lowercase().contains("scim_values"), "{plan}");
    // An uncorrelated semi-join: the attribute's rows are read once, not once per user.
    assert!(!plan.contains("CORRELATED"), "{plan}");
}

async fn check(h: &Harness, t: &str, f: &str, want: Vec<&String>) {
    let path = format!("/Users?filter={}&sortBy=userName", urlencode(f));
    let r = h.scim(t, Method::GET, &path, None).await;
    assert_eq!(r.status, StatusCode::OK, "{f}: {}", r.text);
    let want: Vec<String> = want.into_iter().cloned().collect();
    assert_eq!(ids_of(&r), want, "{f}: {}", r.text);
    assert_eq!(r.body["totalResults"], want.len(), "{f}");
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The exact requests Microsoft Entra ID sends.
async fn scim_entra_quirks(h: &Harness) {
    let t = h.token_with("entra-id", &["scim"]).await;
    // Entra's create (from its provisioning logs).
    let create = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
        "active": true,
        "emails": [{ "primary": true, "type": "work", "value": "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com" }],
        "meta": { "resourceType": "User" },
        "name": { "formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName" },
        "roles": []
    });
    let r = h.scim(&t, Method::POST, "/Users", Some(create)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let uid = id(&r.body);
    // Filter by the work email, Entra style.
    let f =
        urlencode(r#"emails[type eq "work"].value eq "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com""#);
    assert_eq!(ids_of(&h.scim(&t, Method::GET, &format!("/Users?filter={f}"), None).await), vec![uid.clone()]);
    // Capitalised ops, path-less Replace whose keys are paths, value-path path.
    let p = patch(json!([
        { "op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com" },
        { "op": "Replace", "value": { "name.givenName": "Updated", "name.familyName": "Name",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Oncology",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "E-77" } },
        { "op": "Add", "path": "title", "value": "Pharmacist" },
        { "op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0100" },
    ]));
    let r = h.scim(&t, Method::PATCH, &format!("/Users/{uid}"), Some(p)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["emails"][0]["value"], "updatedEmail@microsoft.com");
    assert_eq!(r.body["emails"][0]["type"], "work");
    assert_eq!(r.body["name"]["givenName"], "Updated");
    assert_eq!(r.body[ENT]["department"], "Oncology");
    assert_eq!(r.body["phoneNumbers"][0], json!({ "type": "mobile", "value": "+1 555 0100" }));
    let d = h.get(&format!("/api/v1/users/{uid}")).await;
    assert_eq!(d.body["email"], "updatedEmail@microsoft.com");
    assert_eq!(d.body["hr"]["department"], "Oncology");
    assert_eq!(d.body["hr"]["employee_id"], "E-77");
    // Entra disables with the string "False".
    let r = h
        .scim(
            &t,
            Method::PATCH,
            &format!("/Users/{uid}"),
            Some(patch(json!([{ "op": "Replace", "path": "active", "value": "False" }]))),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["active"], false);
    assert_eq!(h.get(&format!("/api/v1/users/{uid}")).await.body["status"], "disabled");
    // active "True" again: a rehire goes back to pending_verification (needs verification).
    let r = h
        .scim(
            &t,
            Method::PATCH,
            &format!("/Users/{uid}"),
            Some(patch(json!([{ "op": "Replace", "path": "active", "value": "True" }]))),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["active"], false);
    let d = h.get(&format!("/api/v1/users/{uid}")).await;
    assert_eq!(d.body["status"], "pending_verification");
    assert!(d.body["verification"].is_null());

    // Groups: create, add members, excludedAttributes=members, remove with a value array.
    let u2 = id(&h.scim(&t, Method::POST, "/Users", Some(user_body("second@x.org"))).await.body);
    let u3 = id(&h.scim(&t, Method::POST, "/Users", Some(user_body("third@x.org"))).await.body);
    let g = h.scim(&t, Method::POST, "/Groups", Some(json!({ "schemas": [GROUP], "displayName": "Night Shift Nurses", "externalId": "grp-1", "members": [] }))).await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    let gid = id(&g.body);
    let add = patch(json!([{ "op": "Add", "path": "members", "value": [{ "value": u2 }, { "value": u3 }] }]));
    let r = h.scim(&t, Method::PATCH, &format!("/Groups/{gid}"), Some(add)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["members"].as_array().unwrap().len(), 2);
    let l = h
        .scim(
            &t,
            Method::GET,
            "/Groups?excludedAttributes=members&filter=displayName%20eq%20%22night%20shift%20nurses%22",
            None,
        )
        .await;
    assert_eq!(l.status, StatusCode::OK, "{}", l.text);
    assert_eq!(ids_of(&l), vec![gid.clone()]);
    assert!(l.body["Resources"][0].get("members").is_none());
    assert_eq!(l.body["Resources"][0]["displayName"], "Night Shift Nurses");
    let rm = patch(json!([{ "op": "Remove", "path": "members", "value": [{ "value": u2 }] }]));
    let r = h.scim(&t, Method::PATCH, &format!("/Groups/{gid}"), Some(rm)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let members: Vec<&str> =
        r.body["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap()).collect();
    assert_eq!(members, vec![u3.as_str()]);
    let f = urlencode(&format!(r#"members[value eq "{u3}"]"#));
    assert_eq!(
        ids_of(&h.scim(&t, Method::GET, &format!("/Groups?filter={f}&excludedAttributes=members"), None).await),
        vec![gid.clone()]
    );
    // The directory membership follows, with one event per change naming the connector.
    let m = h.get(&format!("/api/v1/groups/{gid}/members")).await;
    assert_eq!(m.body["items"].as_array().map(|a| a.len()).unwrap_or(usize::MAX), 1, "{}", m.text);
    let ev = h.events(&format!("target=group:{gid}&action=group.member_remove")).await;
    assert_eq!(ev[0]["details"]["scim"]["connector"], "entra-id");

    // The User's read-only `groups` follows the memberships: shown, filterable, never written.
    let r = h.scim(&t, Method::GET, &format!("/Users/{u3}"), None).await;
    assert_eq!(
        r.body["groups"],
        json!([{ "value": gid, "$ref": format!("{}/Groups/{gid}", r.body["meta"]["location"].as_str().unwrap().rsplit_once("/Users/").unwrap().0), "display": "Night Shift Nurses", "type": "direct" }]),
        "{}",
        r.text
    );
    assert!(
        h.scim(&t, Method::GET, &format!("/Users/{u2}"), None).await.body.get("groups").is_none(),
        "u2 was removed"
    );
    for f in [
        format!(r#"groups.value eq "{gid}""#),
        r#"groups[display eq "night shift nurses" and type eq "direct"]"#.to_owned(),
    ] {
        let l = h.scim(&t, Method::GET, &format!("/Users?filter={}", urlencode(&f)), None).await;
        assert_eq!(ids_of(&l), vec![u3.clone()], "{f}: {}", l.text);
        assert_eq!(l.body["Resources"][0]["groups"][0]["value"], gid.as_str(), "{f}");
    }
    let l = h
        .scim(
            &t,
            Method::GET,
            &format!("/Users?filter={}", urlencode(r#"groups pr and not (groups.value eq "x")"#)),
            None,
        )
        .await;
    assert_eq!(ids_of(&l), vec![u3.clone()], "{}", l.text);
    // A PUT that echoes `groups` back changes no membership (change the Group's members instead).
    let mut put = h.scim(&t, Method::GET, &format!("/Users/{u2}"), None).await.body;
    put["groups"] = json!([{ "value": gid }]);
    let r = h.scim(&t, Method::PUT, &format!("/Users/{u2}"), Some(put)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body.get("groups").is_none(), "{}", r.text);
    let m = h.get(&format!("/api/v1/groups/{gid}/members")).await;
    assert_eq!(m.body["items"].as_array().map(|a| a.len()).unwrap_or(usize::MAX), 1, "{}", m.text);
}

/// The exact requests Okta sends.
async fn scim_okta_quirks(h: &Harness) {
    let t = h.token_with("okta", &["scim"]).await;
    let create = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "isabella.oneil@example.com",
        "name": { "givenName": "Isabella", "familyName": "O'Neil" },
        "emails": [{ "primary": true, "value": "isabella.oneil@example.com", "type": "work" }],
        "displayName": "Isabella O'Neil",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": true
    });
    let r = h.scim(&t, Method::POST, "/Users", Some(create.clone())).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let uid = id(&r.body);
    h.scim(&t, Method::POST, "/Users", Some(create)).await.scim_error(409, Some("uniqueness"));
    // Okta's lookup before create.
    let r = h
        .scim(
            &t,
            Method::GET,
            "/Users?filter=userName%20eq%20%22isabella.oneil%40example.com%22&startIndex=1&count=100",
            None,
        )
        .await;
    assert_eq!(ids_of(&r), vec![uid.clone()]);
    // Path-less replace deactivates.
    let r = h
        .scim(
            &t,
            Method::PATCH,
            &format!("/Users/{uid}"),
            Some(json!({ "schemas": [PATCH], "Operations": [{ "op": "replace", "value": { "active": false } }] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["active"], false);
    assert_eq!(h.get(&format!("/api/v1/users/{uid}")).await.body["status"], "disabled");

    // Group push: create, rename by PATCH and by PUT, member add (value array) and remove (filter).
    let a = id(&h.scim(&t, Method::POST, "/Users", Some(user_body("a@okta.test"))).await.body);
    let b = id(&h.scim(&t, Method::POST, "/Users", Some(user_body("b@okta.test"))).await.body);
    let g = h
        .scim(
            &t,
            Method::POST,
            "/Groups",
            Some(json!({ "schemas": [GROUP], "displayName": "Test SCIMv2", "members": [] })),
        )
        .await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    let gid = id(&g.body);
    let r = h
        .scim(
            &t,
            Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(patch(json!([{ "op": "replace", "value": { "id": gid, "displayName": "Test SCIMv2 renamed" } }]))),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["displayName"], "Test SCIMv2 renamed");
    let r = h
        .scim(&t, Method::PATCH, &format!("/Groups/{gid}"), Some(patch(json!([{ "op": "add", "path": "members", "value": [{ "value": a, "display": "a@okta.test" }, { "value": b, "display": "b@okta.test" }] }]))))
        .await;
    assert_eq!(r.body["members"].as_array().unwrap().len(), 2, "{}", r.text);
    let r = h
        .scim(
            &t,
            Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(patch(json!([{ "op": "remove", "path": format!("members[value eq \"{a}\"]") }]))),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["members"].as_array().unwrap().len(), 1);
    let r = h
        .scim(
            &t,
            Method::PUT,
            &format!("/Groups/{gid}"),
            Some(json!({ "schemas": [GROUP], "id": gid, "displayName": "Pushed Group", "members": [{ "value": a }] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["displayName"], "Pushed Group");
    let members: Vec<&str> =
        r.body["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap()).collect();
    assert_eq!(members, vec![a.as_str()]);
    // A terminated user cannot be added.
    h.scim(
        &t,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(patch(json!([{ "op": "add", "path": "members", "value": [{ "value": uid }] }]))),
    )
    .await
    .scim_error(400, Some("invalidValue"));
    // DELETE group.
    assert_eq!(h.scim(&t, Method::DELETE, &format!("/Groups/{gid}"), None).await.status, StatusCode::NO_CONTENT);
    h.scim(&t, Method::GET, &format!("/Groups/{gid}"), None).await.scim_error(404, None);
}

/// PATCH forms, ETags, and errors with their scimType; nothing is written by a failing request.
async fn scim_patch_etags_errors(h: &Harness) {
    let t = h.token_with("idp", &["scim"]).await;
    let r = h
        .scim(&t, Method::POST, "/Users", Some(json!({ "schemas": [USER], "userName": "pat@x.org", "emails": [{ "value": "p1@x.org", "type": "work" }, { "value": "p2@x.org", "type": "home" }] })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["active"], false, "no active: pending_verification");
    let uid = id(&r.body);
    let v1 = r.header("etag").unwrap().to_owned();
    // If-None-Match → 304; If-Match mismatch → 412 and nothing changes.
    let nm = h.scim_req(&t, Method::GET, &format!("/Users/{uid}"), None, &[("if-none-match", &v1)]).await;
    assert_eq!(nm.status, StatusCode::NOT_MODIFIED);
    let p = patch(
        json!([{ "op": "remove", "path": "emails[type eq \"home\"]" }, { "op": "add", "path": "nickName", "value": "P" }]),
    );
    let before = h.tree_size().await;
    h.scim_req(&t, Method::PATCH, &format!("/Users/{uid}"), Some(p.clone()), &[("if-match", "W/\"99\"")])
        .await
        .scim_error(412, None);
    assert_eq!(h.tree_size().await, before);
    let ok = h.scim_req(&t, Method::PATCH, &format!("/Users/{uid}"), Some(p), &[("if-match", &v1)]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.body["emails"].as_array().unwrap().len(), 1);
    assert_eq!(ok.body["nickName"], "P");
    assert_ne!(ok.header("etag").unwrap(), v1);
    let nm = h.scim_req(&t, Method::GET, &format!("/Users/{uid}"), None, &[("if-none-match", &v1)]).await;
    assert_eq!(nm.status, StatusCode::OK);
    h.scim_req(&t, Method::DELETE, &format!("/Users/{uid}"), None, &[("if-match", &v1)]).await.scim_error(412, None);

    // remove whole attribute, replace a sub-attribute, add to a multi-valued attribute.
    let r = h
        .scim(
            &t,
            Method::PATCH,
            &format!("/Users/{uid}"),
            Some(patch(json!([
                { "op": "remove", "path": "nickName" },
                { "op": "add", "path": "name", "value": { "givenName": "Pat" } },
                { "op": "replace", "path": "name.familyName", "value": "Doe" },
                { "op": "add", "path": "emails", "value": [{ "value": "p3@x.org", "type": "other" }] },
                { "op": "replace", "path": "emails[value eq \"p1@x.org\"].primary", "value": true },
            ]))),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body.get("nickName").is_none());
    assert_eq!(r.body["name"], json!({ "givenName": "Pat", "familyName": "Doe" }));
    assert_eq!(r.body["emails"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["emails"][0]["primary"], true);

    // Errors, each writing nothing.
    let before = h.tree_size().await;
    let path = format!("/Users/{uid}");
    let cases: Vec<(Value, u16, Option<&str>)> = vec![
        (patch(json!([{ "op": "replace", "path": "id", "value": "x" }])), 400, Some("mutability")),
        (patch(json!([{ "op": "replace", "path": "groups", "value": [] }])), 400, Some("mutability")),
        (patch(json!([{ "op": "remove" }])), 400, Some("noTarget")),
        (patch(json!([{ "op": "replace", "path": "nosuch", "value": 1 }])), 400, Some("invalidPath")),
        (patch(json!([{ "op": "replace", "path": "emails[type eq ]", "value": 1 }])), 400, Some("invalidFilter")),
        (
            patch(
                json!([{ "op": "replace", "path": "emails[type eq \"pager\" or type eq \"fax\"].value", "value": "z@x.org" }]),
            ),
            400,
            Some("noTarget"),
        ),
        (patch(json!([{ "op": "jump", "path": "title", "value": 1 }])), 400, Some("invalidSyntax")),
        (patch(json!([{ "op": "replace", "path": "active", "value": "maybe" }])), 400, Some("invalidValue")),
        (patch(json!([{ "op": "replace", "path": "title", "value": "x".repeat(2000) }])), 400, Some("invalidValue")),
        (
            patch(
                json!([{ "op": "add", "path": "title", "value": "ok" }, { "op": "replace", "path": "userName", "value": "bad name!" }]),
            ),
            400,
            Some("invalidValue"),
        ),
        (json!({ "Operations": [] }), 400, Some("invalidSyntax")),
    ];
    for (body, status, scim_type) in cases {
        h.scim(&t, Method::PATCH, &path, Some(body.clone())).await.scim_error(status, scim_type);
    }
    assert_eq!(h.tree_size().await, before, "failed PATCHes wrote nothing");
    assert!(h.scim(&t, Method::GET, &path, None).await.body.get("title").is_none());

    // Bad creates: wrong schemas, bad JSON, over-long values, 10,000 nested parentheses.
    let users_before = h.scim(&t, Method::GET, "/Users?count=0", None).await.body["totalResults"].clone();
    h.scim(&t, Method::POST, "/Users", Some(json!({ "userName": "noschema" })))
        .await
        .scim_error(400, Some("invalidSyntax"));
    h.scim(&t, Method::POST, "/Users", Some(json!({ "schemas": [GROUP], "userName": "wrong" })))
        .await
        .scim_error(400, Some("invalidValue"));
    h.scim(&t, Method::POST, "/Users", Some(json!({ "schemas": [USER, "urn:x:custom"], "userName": "wrong" })))
        .await
        .scim_error(400, Some("invalidValue"));
    h.scim(&t, Method::POST, "/Users", Some(json!({ "schemas": [USER] }))).await.scim_error(400, Some("invalidValue"));
    h.scim(&t, Method::POST, "/Users", Some(json!({ "schemas": [USER], "userName": "u".repeat(300) })))
        .await
        .scim_error(400, Some("invalidValue"));
    h.scim(
        &t,
        Method::POST,
        "/Users",
        Some(json!({ "schemas": [USER], "userName": "ok@x.org", "displayName": "d".repeat(5000) })),
    )
    .await
    .scim_error(400, Some("invalidValue"));
    h.scim(&t, Method::POST, "/Users", Some(json!({ "schemas": [USER], "userName": "ok@x.org", "emails": (0..101).map(|i| json!({ "value": format!("{i}@x.org") })).collect::<Vec<_>>() }))).await.scim_error(400, Some("invalidValue"));
    let raw = h
        .http
        .post(h.url("/scim/v2/Users"))
        .bearer_auth(&t)
        .header("content-type", "application/scim+json")
        .body("{\"schemas\": [")
        .send()
        .await
        .unwrap();
    Resp::read(raw).await.scim_error(400, Some("invalidSyntax"));
    let deep = format!("{}userName eq \"a\"{}", "(".repeat(10_000), ")".repeat(10_000));
    h.scim(&t, Method::GET, &format!("/Users?filter={}", urlencode(&deep)), None)
        .await
        .scim_error(400, Some("invalidFilter"));
    let deep_search = json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": deep });
    let r = h.scim(&t, Method::POST, "/Users/.search", Some(deep_search)).await;
    assert!(r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_eq!(h.scim(&t, Method::GET, "/Users?count=0", None).await.body["totalResults"], users_before);
    h.scim(&t, Method::GET, "/Users/not-a-uuid", None).await.scim_error(404, None);
    h.scim(&t, Method::PUT, "/Users/0190a1b2-0000-7000-8000-000000000000", Some(user_body("x@x.org")))
        .await
        .scim_error(404, None);
}

async fn scim_bulk(h: &Harness) {
    let t = h.token_with("bulk-idp", &["scim"]).await;
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "failOnErrors": 2,
        "Operations": [
            { "method": "POST", "path": "/Users", "bulkId": "u1", "data": user_body("bulk1@x.org") },
            { "method": "POST", "path": "/Groups", "bulkId": "g1", "data": { "schemas": [GROUP], "displayName": "Bulk Group", "members": [{ "type": "User", "value": "bulkId:u1" }] } },
            { "method": "PATCH", "path": "/Users/bulkId:u1", "data": patch(json!([{ "op": "add", "path": "title", "value": "Clerk" }])) },
            { "method": "POST", "path": "/Users", "data": user_body("bulk1@x.org") },
        ],
    });
    let r = h.scim(&t, Method::POST, "/Bulk", Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let ops = r.body["Operations"].as_array().unwrap();
    assert_eq!(ops[0]["status"], "201");
    assert_eq!(ops[1]["status"], "201");
    assert_eq!(ops[2]["status"], "200");
    assert_eq!(ops[3]["status"], "409");
    assert_eq!(ops[3]["response"]["scimType"], "uniqueness");
    let gloc = ops[1]["location"].as_str().unwrap();
    let gid = gloc.rsplit('/').next().unwrap();
    let g = h.scim(&t, Method::GET, &format!("/Groups/{gid}"), None).await;
    assert_eq!(g.body["members"].as_array().unwrap().len(), 1, "{}", g.text);
    // failOnErrors stops after that many errors.
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "failOnErrors": 1,
        "Operations": [
            { "method": "POST", "path": "/Users", "data": user_body("bulk1@x.org") },
            { "method": "POST", "path": "/Users", "data": user_body("never@x.org") },
        ],
    });
    let r = h.scim(&t, Method::POST, "/Bulk", Some(body)).await;
    assert_eq!(r.body["Operations"].as_array().unwrap().len(), 1, "{}", r.text);
    // Beyond maxOperations or maxPayloadSize: 413.
    let many: Vec<Value> = (0..101).map(|i| json!({ "method": "DELETE", "path": format!("/Users/{i}") })).collect();
    let r = h
        .scim(
            &t,
            Method::POST,
            "/Bulk",
            Some(json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": many })),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    let big = json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [{ "method": "POST", "path": "/Users", "data": { "pad": "x".repeat(70_000) } }] });
    // (A client of its own: the server answers 413 before reading the body and closes.)
    let once = reqwest::Client::new();
    let r = once
        .post(h.url("/scim/v2/Bulk"))
        .bearer_auth(&t)
        .header("content-type", "application/scim+json")
        .body(serde_json::to_vec(&big).unwrap())
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    assert!(
        h.scim(&t, Method::GET, "/Users?filter=userName%20eq%20%22never%40x.org%22", None).await.body["totalResults"]
            == 0
    );
}

/// A scim token reaches /scim/v2 only; pdp tokens cannot use SCIM; admin tokens can.
async fn scim_scopes(h: &Harness) {
    let scim = h.token_with("connector", &["scim"]).await;
    let pdp = h.token_with("pep", &["pdp"]).await;
    assert_eq!(h.scim(&scim, Method::GET, "/Users", None).await.status, StatusCode::OK);
    assert_eq!(h.scim(&h.admin, Method::GET, "/Users", None).await.status, StatusCode::OK);
    h.scim(&pdp, Method::GET, "/Users", None).await.scim_error(403, None);
    h.scim(&pdp, Method::POST, "/Users", Some(user_body("x@x.org"))).await.scim_error(403, None);
    h.scim("wkt_bogus", Method::GET, "/Users", None).await.scim_error(401, None);
    let r = Resp::read(h.http.get(h.url("/scim/v2/Users")).send().await.unwrap()).await;
    r.scim_error(401, None);
    h.call(Method::GET, "/api/v1/users", Some(&scim), None).await.problem(StatusCode::FORBIDDEN, "forbidden");
    h.call(Method::POST, "/api/v1/tokens", Some(&scim), Some(json!({ "name": "x", "scopes": ["admin"] })))
        .await
        .problem(StatusCode::FORBIDDEN, "forbidden");
    let eval = json!({ "subject": { "type": "user", "id": "x" }, "action": { "name": "read" }, "resource": { "type": "record", "id": "r" } });
    h.call(Method::POST, "/access/v1/evaluation", Some(&scim), Some(eval))
        .await
        .problem(StatusCode::FORBIDDEN, "forbidden");
    let denied = h.events("action=auth.denied").await;
    assert!(denied.iter().any(|e| e["details"]["needed_scope"] == "scim"), "{denied:?}");
}

/// `active: false` through SCIM ends every session and decision before the response returns.
async fn scim_termination(h: &Harness) {
    let t = h.token_with("entra", &["scim"]).await;
    let pdp = h.token_with("pep", &["pdp"]).await;
    let uid = h.person("leaver.one").await;
    let (cookie, _, _) = h.enrolled("leaver.one").await;
    assert_eq!(h.with_cookie(Method::GET, "/api/v1/me", &cookie, None).await.status, StatusCode::OK);
    let rt = h.post("/api/v1/resource-types", json!({ "name": "chart", "actions": ["read"] })).await;
    assert_eq!(rt.status, StatusCode::CREATED, "{}", rt.text);
    let res = h.post("/api/v1/resources", json!({ "type_id": id(&rt.body), "name": "ward-1" })).await;
    let role = h
        .post(
            "/api/v1/roles",
            json!({ "name": "chart-reader", "permissions": [{ "resource_type": "chart", "actions": ["read"] }] }),
        )
        .await;
    let g =
        h.post("/api/v1/grants", json!({ "justification": "test access", "subject": { "type": "user", "id": uid }, "role_id": id(&role.body) })).await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    let group = h.post("/api/v1/groups", json!({ "name": "ward-team" })).await;
    let m = h.post(&format!("/api/v1/groups/{}/members", id(&group.body)), json!({ "type": "user", "id": uid })).await;
    assert!(m.status.is_success(), "{}", m.text);
    let ask = json!({ "subject": { "type": "user", "id": uid }, "action": { "name": "read" }, "resource": { "type": "chart", "id": id(&res.body) } });
    let d = h.call(Method::POST, "/access/v1/evaluation", Some(&pdp), Some(ask.clone())).await;
    assert_eq!(d.body["decision"], true, "{}", d.text);

    // The user (created outside SCIM) is visible to the connector and terminated by it.
    let f = urlencode(r#"userName eq "leaver.one""#);
    assert_eq!(ids_of(&h.scim(&t, Method::GET, &format!("/Users?filter={f}"), None).await), vec![uid.clone()]);
    let r = h
        .scim(
            &t,
            Method::PATCH,
            &format!("/Users/{uid}"),
            Some(patch(json!([{ "op": "Replace", "path": "active", "value": "False" }]))),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Right after the response: session refused, decision denied, everything revoked.
    h.with_cookie(Method::GET, "/api/v1/me", &cookie, None).await.problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    let d = h.call(Method::POST, "/access/v1/evaluation", Some(&pdp), Some(ask)).await;
    assert_eq!(d.body["decision"], false, "{}", d.text);
    let u = h.get(&format!("/api/v1/users/{uid}")).await;
    assert_eq!(u.body["status"], "disabled");
    assert_eq!(h.get(&format!("/api/v1/groups/{}/members", id(&group.body))).await.body["items"], json!([]));
    let ev = h.events(&format!("target=user:{uid}&action=scim.terminate")).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["details"]["revoked"]["grants"], 1);
    assert_eq!(ev[0]["details"]["revoked"]["sessions"], 1);
    assert_eq!(ev[0]["details"]["scim"]["connector"], "entra");
    let revokes = h.events(&format!("target=grant:{}", id(&g.body))).await;
    assert!(revokes.iter().any(|e| e["action"] == "grant.revoke" && e["reason"] == "scim active=false"), "{revokes:?}");
}

/// Separation of duties holds for members added through SCIM, and a refused PATCH writes nothing.
async fn scim_separation_of_duties(h: &Harness) {
    let t = h.token_with("entra", &["scim"]).await;
    let requester = h.create_role("payments-requester").await;
    let approver = h.create_role("payments-approver").await;
    let rule = h
        .post("/api/v1/sod-rules", json!({ "name": "request-vs-approve", "left": { "kind": "role", "role_id": id(&requester) }, "right": { "kind": "role", "role_id": id(&approver) } }))
        .await;
    assert_eq!(rule.status, StatusCode::CREATED, "{}", rule.text);
    let u = id(&h.scim(&t, Method::POST, "/Users", Some(user_body("grace@x.org"))).await.body);
    let ok = id(&h.scim(&t, Method::POST, "/Users", Some(user_body("heidi@x.org"))).await.body);
    let g =
        h.post("/api/v1/grants", json!({ "justification": "test access", "subject": { "type": "user", "id": u }, "role_id": id(&requester) })).await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    let group =
        h.scim(&t, Method::POST, "/Groups", Some(json!({ "schemas": [GROUP], "displayName": "Approvers" }))).await;
    let gid = id(&group.body);
    let gg =
        h.post("/api/v1/grants", json!({ "justification": "test access", "subject": { "type": "group", "id": gid }, "role_id": id(&approver) })).await;
    assert_eq!(gg.status, StatusCode::CREATED, "{}", gg.text);
    let before = h.tree_size().await;
    let add = patch(json!([{ "op": "Add", "path": "members", "value": [{ "value": ok }, { "value": u }] }]));
    let r = h.scim(&t, Method::PATCH, &format!("/Groups/{gid}"), Some(add)).await;
    let e = r.scim_error(409, None);
    assert!(e["detail"].as_str().unwrap().contains("request-vs-approve"), "{e}");
    assert_eq!(h.tree_size().await, before, "the whole PATCH is refused: heidi was not added either");
    let g = h.scim(&t, Method::GET, &format!("/Groups/{gid}"), None).await;
    assert_eq!(g.body["members"], json!([]), "{}", g.text);
    let add = patch(json!([{ "op": "Add", "path": "members", "value": [{ "value": ok }] }]));
    assert_eq!(h.scim(&t, Method::PATCH, &format!("/Groups/{gid}"), Some(add)).await.status, StatusCode::OK);
}

/// PATCH with the enterprise extension's URN as the whole path (RFC 7644 §3.5.2): `add` and
/// `replace` set the attributes the value names and leave the others, `null` unassigns one,
/// `remove` drops the extension; each reaches the directory's HR attributes.
async fn scim_patch_whole_extension(h: &Harness) {
    let t = h.token_with("okta-prod", &["scim"]).await;
    let body = json!({
        "schemas": [USER, ENT],
        "userName": "ext.whole@example.com",
        "active": true,
        ENT: { "employeeNumber": "E-7", "department": "Cardiology", "costCenter": "CC-1" },
    });
    let r = h.scim(&t, Method::POST, "/Users", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let uid = id(&r.body);
    let path = format!("/Users/{uid}");

    let add = h
        .scim(
            &t,
            Method::PATCH,
            &path,
            Some(patch(
                json!([{ "op": "add", "path": ENT, "value": { "division": "East", "department": "Oncology" } }]),
            )),
        )
        .await;
    assert_eq!(add.status, StatusCode::OK, "{}", add.text);
    assert_eq!(
        add.body[ENT],
        json!({ "employeeNumber": "E-7", "department": "Oncology", "costCenter": "CC-1", "division": "East" }),
        "{}",
        add.text
    );
    assert_eq!(h.get(&format!("/api/v1/users/{uid}")).await.body["hr"]["department"], "Oncology");

    // Case-insensitive URN; `null` unassigns; attributes not named are unchanged.
    let replace = h
        .scim(
            &t,
            Method::PATCH,
            &path,
            Some(patch(json!([{
                "op": "Replace",
                "path": ENT.to_uppercase().replace("URN:", "urn:"),
                "value": { "costCenter": "CC-9", "department": null },
            }]))),
        )
        .await;
    assert_eq!(replace.status, StatusCode::OK, "{}", replace.text);
    assert_eq!(
        replace.body[ENT],
        json!({ "employeeNumber": "E-7", "costCenter": "CC-9", "division": "East" }),
        "{}",
        replace.text
    );
    assert!(h.get(&format!("/api/v1/users/{uid}")).await.body["hr"].get("department").is_none());
    assert!(replace.body["schemas"].as_array().unwrap().iter().any(|s| s == ENT), "{}", replace.text);

    // Bad values write nothing.
    let before = h.tree_size().await;
    for (value, scim_type) in [
        (json!("Oncology"), "invalidValue"),
        (json!({ "title": "Nurse" }), "invalidPath"),
        (json!({ "department": { "name": "Oncology" } }), "invalidValue"),
    ] {
        h.scim(&t, Method::PATCH, &path, Some(patch(json!([{ "op": "replace", "path": ENT, "value": value }]))))
            .await
            .scim_error(400, Some(scim_type));
    }
    assert_eq!(h.tree_size().await, before, "refused PATCHes wrote nothing");

    let remove = h.scim(&t, Method::PATCH, &path, Some(patch(json!([{ "op": "remove", "path": ENT }])))).await;
    assert_eq!(remove.status, StatusCode::OK, "{}", remove.text);
    assert!(remove.body.get(ENT).is_none(), "{}", remove.text);
    assert_eq!(remove.body["schemas"], json!([USER]), "{}", remove.text);
    let hr = h.get(&format!("/api/v1/users/{uid}")).await.body["hr"].clone();
    assert!(hr.get("employee_id").is_none() && hr.get("department").is_none(), "{hr}");
    let stored = h.scim(&t, Method::GET, &path, None).await;
    assert!(stored.body.get(ENT).is_none(), "{}", stored.text);
    // Removing what is not there is not an error (the extension is unassigned either way).
    let again = h.scim(&t, Method::PATCH, &path, Some(patch(json!([{ "op": "remove", "path": ENT }])))).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    // And `add` brings it back.
    let back = h
        .scim(
            &t,
            Method::PATCH,
            &path,
            Some(patch(json!([{ "op": "add", "path": ENT, "value": { "department": "ICU" } }]))),
        )
        .await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.text);
    assert_eq!(back.body[ENT], json!({ "department": "ICU" }), "{}", back.text);
    assert_eq!(back.body["schemas"], json!([USER, ENT]), "{}", back.text);
}

/// `active` (and `userName`) cannot be removed or nulled: RFC 7644 §3.5.2's `mutability` error,
/// where a removal used to be dropped silently and the user stayed as it was.
async fn scim_remove_active_is_refused(h: &Harness) {
    let t = h.token_with("entra", &["scim"]).await;
    let r = h.scim(&t, Method::POST, "/Users", Some(user_body("keep.active@example.com"))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let uid = id(&r.body);
    let path = format!("/Users/{uid}");
    let before = h.tree_size().await;
    for ops in [
        json!([{ "op": "remove", "path": "active" }]),
        json!([{ "op": "Remove", "path": "urn:ietf:params:scim:schemas:core:2.0:User:active" }]),
        json!([{ "op": "replace", "path": "active", "value": null }]),
        json!([{ "op": "replace", "value": { "active": null } }]),
        json!([{ "op": "add", "path": "title", "value": "Nurse" }, { "op": "remove", "path": "active" }]),
        json!([{ "op": "remove", "path": "userName" }]),
    ] {
        let body = h
            .scim(&t, Method::PATCH, &path, Some(patch(ops.clone())))
            .await
            .scim_error(400, Some("mutability"))
            .clone();
        assert!(body["detail"].as_str().unwrap().contains("cannot be removed"), "{ops}: {body}");
    }
    assert_eq!(h.tree_size().await, before, "refused PATCHes wrote nothing");
    let now = h.scim(&t, Method::GET, &path, None).await;
    assert_eq!(now.body["active"], true, "{}", now.text);
    assert!(now.body.get("title").is_none(), "all or nothing: {}", now.text);
    assert_eq!(h.get(&format!("/api/v1/users/{uid}")).await.body["status"], "active");
    // Deactivating is a replace with false.
    let off = h
        .scim(&t, Method::PATCH, &path, Some(patch(json!([{ "op": "replace", "path": "active", "value": false }]))))
        .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.text);
    assert_eq!(off.body["active"], false);
    // A group's displayName likewise.
    let g = h.scim(&t, Method::POST, "/Groups", Some(json!({ "schemas": [GROUP], "displayName": "Keepers" }))).await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    h.scim(
        &t,
        Method::PATCH,
        &format!("/Groups/{}", id(&g.body)),
        Some(patch(json!([{ "op": "remove", "path": "displayName" }]))),
    )
    .await
    .scim_error(400, Some("mutability"));
}

/// `meta.location`, `Location`, `$ref`s and the discovery documents name the configured public
/// URL, whatever `Host` the request carried.
async fn scim_locations_ignore_host(h: &Harness) {
    let t = h.token_with("entra", &["scim"]).await;
    let public = format!("{}/scim/v2", authn::ORIGIN);
    let forged = "evil.example:443";
    let send = |method: Method, path: String, body: Option<Value>| {
        let t = t.clone();
        async move { h.scim_req(&t, method, &path, body, &[("host", forged)]).await }
    };
    let made = send(Method::POST, "/Users".into(), Some(user_body("host.check@example.com"))).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let uid = id(&made.body);
    assert_eq!(made.header("location"), Some(format!("{public}/Users/{uid}").as_str()), "{}", made.text);
    assert_eq!(made.body["meta"]["location"], format!("{public}/Users/{uid}"));
    let g = send(
        Method::POST,
        "/Groups".into(),
        Some(json!({ "schemas": [GROUP], "displayName": "Host Check", "members": [{ "value": uid }] })),
    )
    .await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    assert_eq!(g.body["members"][0]["$ref"], format!("{public}/Users/{uid}"), "{}", g.text);
    let mut texts = vec![made.text.clone(), g.text.clone()];
    for path in [
        format!("/Users/{uid}"),
        "/Users".to_owned(),
        format!("/Groups/{}", id(&g.body)),
        "/ServiceProviderConfig".to_owned(),
        "/ResourceTypes".to_owned(),
        "/ResourceTypes/User".to_owned(),
        "/Schemas".to_owned(),
    ] {
        let r = send(Method::GET, path.clone(), None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        assert!(r.text.contains(&public), "{path}: {}", r.text);
        texts.push(r.text);
    }
    let p = send(
        Method::PATCH,
        format!("/Users/{uid}"),
        Some(patch(json!([{ "op": "add", "path": "title", "value": "RN" }]))),
    )
    .await;
    assert_eq!(p.body["meta"]["location"], format!("{public}/Users/{uid}"), "{}", p.text);
    texts.push(p.text);
    let bulk = send(
        Method::POST,
        "/Bulk".into(),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [{ "method": "POST", "path": "/Users", "bulkId": "b1", "data": user_body("bulk.host@example.com") }],
        })),
    )
    .await;
    assert_eq!(bulk.status, StatusCode::OK, "{}", bulk.text);
    assert!(
        bulk.body["Operations"][0]["location"].as_str().unwrap().starts_with(&format!("{public}/Users/")),
        "{}",
        bulk.text
    );
    texts.push(bulk.text);
    for text in texts {
        assert!(!text.contains("evil.example"), "the forged Host leaked: {text}");
    }
}

authn_on_both_stores!(
    scim_discovery,
    scim_users_crud,
    scim_filters,
    scim_entra_quirks,
    scim_okta_quirks,
    scim_patch_etags_errors,
    scim_bulk,
    scim_scopes,
    scim_termination,
    scim_separation_of_duties,
    scim_patch_whole_extension,
    scim_remove_active_is_refused,
    scim_locations_ignore_host,
);
