"""Wardkey's SCIM 2.0 service provider driven by an independent client: scim2-client (Yaal Coop)
with its httpx2 engine and the scim2-models resource models, none of it written here.

Run against a live server:

    WARDKEY_SCIM_URL=http://127.0.0.1:8080/scim/v2 WARDKEY_SCIM_TOKEN=wkt_... \
        python tests/scim2/test_scim2_client.py

The Rust test crates/wardkey/tests/scim2_client.rs starts `wardkey serve` (SQLite and
PostgreSQL), creates a token with scope `scim` and runs this script. Every name a test creates
carries a prefix unique to the run, so the script can run again against the same server.

Only the standard library's unittest besides scim2-client, to keep the install minimal
(tests/scim2/requirements.txt pins what it was written against).
"""

import os
import sys
import unittest
import uuid

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import (
    Context,
    Email,
    EnterpriseUser,
    Error,
    Group,
    GroupMember,
    ListResponse,
    Name,
    PatchOp,
    PatchOperation,
    ResourceType,
    SCIMException,
    ScimProvider,
    Schema,
    SearchRequest,
    ServiceProviderConfig,
    User,
)

BASE = os.environ.get("WARDKEY_SCIM_URL", "").rstrip("/")
TOKEN = os.environ.get("WARDKEY_SCIM_TOKEN", "")
RUN = uuid.uuid4().hex[:8]

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"

FullUser = User[EnterpriseUser]


def http(token=TOKEN):
    return httpx2.Client(base_url=BASE, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def static_client():
    """A client that knows the core User with the enterprise extension and Group from
    scim2-models, and asks the server only for its ServiceProviderConfig (ETag support etc.)."""
    provider = ScimProvider(
        models=[User, EnterpriseUser, Group],
        resource_types=[ResourceType.from_resource(FullUser), ResourceType.from_resource(Group)],
    )
    client = SyncSCIMClient(http(), provider=provider)
    client.discover()
    return client


def name_of(tag):
    return f"wk{RUN}-{tag}"


def make_user(tag, *, department="Cardiology", active=True, work=None, home=None, given="Given", family="Family"):
    emails = [Email(value=work or f"{name_of(tag)}@work.example", type="work", primary=True)]
    if home is not None:
        emails.append(Email(value=home, type="home"))
    user = FullUser(
        user_name=name_of(tag),
        display_name=f"Display {tag}",
        name=Name(given_name=given, family_name=family),
        emails=emails,
        active=active,
    )
    user[EnterpriseUser] = EnterpriseUser(employee_number=f"E-{RUN}-{tag}", department=department)
    return user


def scim_error(test, ctx, status, scim_type=None):
    """The SCIMException the client raised for a SCIM error response (RFC 7644 §3.12)."""
    exc = ctx.exception
    test.assertEqual(int(exc.status), status, f"status of {exc!r}: {getattr(exc, 'error', None)}")
    if scim_type is not None:
        test.assertEqual(exc.scim_type, scim_type, f"scimType of {exc!r}")
    return exc


class Discovery(unittest.TestCase):
    def setUp(self):
        self.h = http()

    def tearDown(self):
        self.h.close()

    def test_discover_loads_config_resource_types_and_schemas(self):
        client = SyncSCIMClient(self.h)
        client.discover()
        spc = client.provider.config
        self.assertIsInstance(spc, ServiceProviderConfig)
        self.assertTrue(spc.patch.supported)
        self.assertTrue(spc.filter.supported)
        self.assertGreater(spc.filter.max_results, 0)
        self.assertTrue(spc.sort.supported)
        self.assertTrue(spc.etag.supported)
        self.assertIsNotNone(spc.bulk)
        self.assertTrue(spc.authentication_schemes, "an authentication scheme is advertised")

        by_name = {rt.name: rt for rt in client.provider.resource_types}
        self.assertIn("User", by_name)
        self.assertIn("Group", by_name)
        self.assertEqual(by_name["User"].endpoint, "/Users")
        self.assertEqual(by_name["Group"].endpoint, "/Groups")
        self.assertEqual(str(by_name["User"].schema_), CORE_USER)
        self.assertEqual(str(by_name["Group"].schema_), CORE_GROUP)
        extensions = [str(e.schema_) for e in by_name["User"].schema_extensions or []]
        self.assertIn(ENTERPRISE, extensions)

        # The models the client built from /Schemas: a User with the enterprise extension.
        model = client.get_resource_model("User")
        self.assertIsNotNone(model)
        self.assertIn("user_name", model.model_fields)
        schemas = client.query(Schema)
        ids = {str(s.id) for s in schemas.resources}
        self.assertTrue({CORE_USER, CORE_GROUP, ENTERPRISE} <= ids, ids)
        user_schema = client.query(Schema, CORE_USER)
        names = {a.name.lower() for a in user_schema.attributes}
        self.assertTrue({"username", "emails", "active", "name", "displayname"} <= names, names)

    def test_discovery_endpoints_refuse_writes(self):
        with http() as h:
            for path in ("/ServiceProviderConfig", "/ResourceTypes", "/Schemas"):
                r = h.post(path, json={})
                self.assertEqual(r.status_code, 405, f"POST {path}: {r.text}")

    def test_a_dynamic_model_creates_and_reads_back(self):
        client = SyncSCIMClient(self.h)
        client.discover()
        model = client.get_resource_model("User")
        user = model.model_validate({"schemas": [CORE_USER], "userName": name_of("dyn"), "active": True})
        made = client.create(user)
        self.assertEqual(made.user_name, name_of("dyn"))
        self.assertTrue(made.id)
        client.delete(made)


class WithClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = static_client()

    @classmethod
    def tearDownClass(cls):
        cls.client.client.close()


class Users(WithClient):

    def test_create_core_and_enterprise_then_read(self):
        sent = make_user("Create.Me", department="Oncology", home=f"{name_of('h')}@home.example", given="Barbara", family="Jensen")
        made = self.client.create(sent)
        self.assertIsInstance(made, FullUser)
        self.assertTrue(made.id)
        self.assertEqual(made.user_name, name_of("Create.Me"), "values are stored as sent (case kept)")
        self.assertEqual(made.name.given_name, "Barbara")
        self.assertEqual(made.name.family_name, "Jensen")
        self.assertTrue(made.active)
        self.assertEqual({(e.type, e.value) for e in made.emails}, {(e.type, e.value) for e in sent.emails})
        self.assertEqual(made[EnterpriseUser].employee_number, f"E-{RUN}-Create.Me")
        self.assertEqual(made[EnterpriseUser].department, "Oncology")
        self.assertEqual(made.meta.resource_type, "User")
        self.assertTrue(made.meta.version, "meta.version is the ETag")
        self.assertTrue(str(made.meta.location).endswith(f"/Users/{made.id}"), made.meta.location)
        self.assertIsNotNone(made.meta.created)

        again = self.client.query(FullUser, made.id)
        self.assertEqual(again.id, made.id)
        self.assertEqual(again.user_name, made.user_name)
        self.assertEqual(again[EnterpriseUser].department, "Oncology")
        self.assertEqual(again.meta.version, made.meta.version)

    def test_duplicate_user_name_is_409_uniqueness(self):
        self.client.create(make_user("dup"))
        clash = make_user("dup")
        clash.user_name = clash.user_name.upper()  # userName is caseExact=false
        with self.assertRaises(SCIMException) as ctx:
            self.client.create(clash)
        scim_error(self, ctx, 409, "uniqueness")

    def test_attributes_and_excluded_attributes(self):
        made = self.client.create(make_user("attrs"))
        got = self.client.query(FullUser, made.id, {"attributes": ["userName"]}, check_request_payload=False, check_response_payload=False)
        self.assertEqual(got["id"], made.id)
        self.assertIn("userName", got)
        self.assertNotIn("emails", got)
        got = self.client.query(FullUser, made.id, {"excludedAttributes": ["emails"]}, check_request_payload=False, check_response_payload=False)
        self.assertIn("userName", got)
        self.assertNotIn("emails", got)

    def test_replace_with_put(self):
        made = self.client.create(make_user("put"))
        made.display_name = "Replaced Name"
        made[EnterpriseUser].department = "Radiology"
        replaced = self.client.replace(made)
        self.assertEqual(replaced.display_name, "Replaced Name")
        self.assertEqual(replaced[EnterpriseUser].department, "Radiology")
        self.assertNotEqual(replaced.meta.version, made.meta.version)

    def test_search_with_post(self):
        made = self.client.create(make_user("post-search"))
        found = self.client.search(FullUser, SearchRequest(filter=f'userName eq "{made.user_name}"'))
        self.assertIsInstance(found, ListResponse)
        self.assertEqual(found.total_results, 1)
        self.assertEqual(found.resources[0].id, made.id)


class Groups(WithClient):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.a = cls.client.create(make_user("g-a"))
        cls.b = cls.client.create(make_user("g-b"))
        cls.c = cls.client.create(make_user("g-c"))

    def test_create_group_with_members_and_patch_members(self):
        group = Group(display_name=name_of("Nurses"), members=[GroupMember(value=self.a.id), GroupMember(value=self.b.id)])
        made = self.client.create(group)
        self.assertIsInstance(made, Group)
        self.assertEqual(made.display_name, name_of("Nurses"))
        self.assertEqual({m.value for m in made.members or []}, {self.a.id, self.b.id})
        self.assertEqual(made.meta.resource_type, "Group")

        found = self.client.query(Group, query_parameters=SearchRequest(filter=f'displayName eq "{name_of("Nurses")}"'))
        self.assertEqual(found.total_results, 1)

        add = PatchOp[Group](operations=[PatchOperation(op="add", path="members", value=[{"value": self.c.id}])])
        patched = self.client.modify(Group, made.id, add)
        self.assertEqual({m.value for m in patched.members}, {self.a.id, self.b.id, self.c.id})

        remove = PatchOp[Group](operations=[PatchOperation(op="remove", path=f'members[value eq "{self.a.id}"]')])
        patched = self.client.modify(Group, made.id, remove)
        self.assertEqual({m.value for m in patched.members}, {self.b.id, self.c.id})

        rename = PatchOp[Group](operations=[PatchOperation(op="replace", path="displayName", value=name_of("Nurses-2"))])
        patched = self.client.modify(Group, made.id, rename)
        self.assertEqual(patched.display_name, name_of("Nurses-2"))

        members = self.client.query(Group, query_parameters=SearchRequest(filter=f'members.value eq "{self.b.id}" and displayName sw "wk{RUN}"'))
        self.assertEqual([g.id for g in members.resources], [made.id])

        self.client.delete(Group, made.id)
        with self.assertRaises(SCIMException) as ctx:
            self.client.query(Group, made.id)
        scim_error(self, ctx, 404)


class Queries(WithClient):
    """Six users with names unique to the run; every filter is anchored on the run's prefix."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.prefix = f"wk{RUN}-q-"
        spec = [
            ("alice", "Cardiology", True),
            ("bob", "Oncology", True),
            ("carol", "Oncology", False),
            ("dave", "Radiology", True),
            ("erin", "Cardiology", True),
            ("frank", "Emergency", False),
        ]
        cls.users = {}
        for tag, dept, active in spec:
            made = cls.client.create(make_user(f"q-{tag}", department=dept, active=active, home=f"{tag}.{RUN}@home.example"))
            cls.users[tag] = made

    def names(self, flt, **kw):
        res = self.client.query(FullUser, query_parameters=SearchRequest(filter=flt, **kw))
        self.assertIsInstance(res, ListResponse)
        return res, sorted(u.user_name.removeprefix(self.prefix) for u in res.resources or [])

    def test_user_name_eq_is_case_insensitive(self):
        res, names = self.names(f'userName eq "{self.prefix}alice"')
        self.assertEqual(names, ["alice"])
        self.assertEqual(res.total_results, 1)
        _, names = self.names(f'USERNAME Eq "{self.prefix.upper()}ALICE"')
        self.assertEqual(names, ["alice"], "attribute names, operators and userName (caseExact=false) ignore case")

    def test_co_sw_ew_and_or_not(self):
        _, names = self.names(f'userName sw "{self.prefix}"')
        self.assertEqual(names, ["alice", "bob", "carol", "dave", "erin", "frank"])
        _, names = self.names(f'userName sw "{self.prefix}" and userName co "r"')
        self.assertEqual(names, ["carol", "erin", "frank"])
        _, names = self.names(f'userName ew "{self.prefix}bob" or userName eq "{self.prefix}dave"')
        self.assertEqual(names, ["bob", "dave"])
        _, names = self.names(f'userName sw "{self.prefix}" and (active eq false or userName co "ali")')
        self.assertEqual(names, ["alice", "carol", "frank"])
        _, names = self.names(f'userName sw "{self.prefix}" and not (active eq true)')
        self.assertEqual(names, ["carol", "frank"])
        # Precedence: and binds tighter than or.
        _, names = self.names(f'userName eq "{self.prefix}bob" or userName sw "{self.prefix}" and active eq false')
        self.assertEqual(names, ["bob", "carol", "frank"])
        _, names = self.names(f'userName sw "{self.prefix}" and title pr')
        self.assertEqual(names, [])

    def test_value_path_and_extension_filters(self):
        _, names = self.names(f'emails[type eq "work" and value co "{self.prefix}erin"]')
        self.assertEqual(names, ["erin"])
        _, names = self.names(f'emails[type eq "home" and value sw "carol.{RUN}"]')
        self.assertEqual(names, ["carol"])
        _, names = self.names(f'emails[type eq "work"].value eq "{self.prefix}dave@work.example"')
        self.assertEqual(names, ["dave"])
        _, names = self.names(f'userName sw "{self.prefix}" and {ENTERPRISE}:department eq "Oncology"')
        self.assertEqual(names, ["bob", "carol"])
        _, names = self.names(f'{ENTERPRISE}:employeeNumber eq "E-{RUN}-q-frank"')
        self.assertEqual(names, ["frank"])
        _, names = self.names(f'userName sw "{self.prefix}" and emails.value co "@home.example" and active eq true')
        self.assertEqual(names, ["alice", "bob", "dave", "erin"])

    def test_no_match_is_200_with_zero_results(self):
        res, names = self.names(f'userName eq "{self.prefix}nobody"')
        self.assertEqual(res.total_results, 0)
        self.assertEqual(names, [])

    def test_paging_is_one_based_and_stable_with_sorting(self):
        flt = f'userName sw "{self.prefix}"'
        seen = []
        for start in (1, 3, 5):
            res, _ = self.names(flt, sort_by="userName", start_index=start, count=2)
            self.assertEqual(res.total_results, 6)
            self.assertEqual(res.start_index, start)
            self.assertEqual(res.items_per_page, 2)
            seen += [u.user_name.removeprefix(self.prefix) for u in res.resources]
        self.assertEqual(seen, ["alice", "bob", "carol", "dave", "erin", "frank"])

        res, _ = self.names(flt, sort_by="userName", sort_order="descending", start_index=1, count=3)
        self.assertEqual([u.user_name.removeprefix(self.prefix) for u in res.resources], ["frank", "erin", "dave"])

        res, _ = self.names(flt, sort_by="userName", start_index=6, count=10)
        self.assertEqual([u.user_name.removeprefix(self.prefix) for u in res.resources], ["frank"])
        res, _ = self.names(flt, start_index=7, count=10)
        self.assertEqual(res.total_results, 6)
        self.assertFalse(res.resources)
        res, _ = self.names(flt, count=0)
        self.assertEqual(res.total_results, 6, "count=0 answers only the total")
        self.assertFalse(res.resources)

        # Sorting by an attribute of a multi-valued complex attribute (its primary value).
        res, _ = self.names(flt, sort_by="emails.value", sort_order="descending", count=6)
        self.assertEqual([u.user_name.removeprefix(self.prefix) for u in res.resources], ["frank", "erin", "dave", "carol", "bob", "alice"])
        # The same page twice is the same page (a stable order without sortBy too).
        a, _ = self.names(flt, start_index=2, count=3)
        b, _ = self.names(flt, start_index=2, count=3)
        self.assertEqual([u.id for u in a.resources], [u.id for u in b.resources])

    def test_malformed_filters_are_invalid_filter(self):
        for bad in (f'userName eq "{self.prefix}', "userName zz \"x\"", "((userName eq \"x\")", "(" * 10_000 + 'userName eq "x"' + ")" * 10_000):
            with self.assertRaises(SCIMException) as ctx:
                # Sent as is: scim2-models would refuse these filters before they leave.
                self.client.query(FullUser, query_parameters={"filter": bad}, check_request_payload=False)
            scim_error(self, ctx, 400, "invalidFilter")


class Patching(WithClient):

    def patch(self, user, *ops, **kw):
        return self.client.modify(FullUser, user.id, PatchOp[FullUser](operations=list(ops)), **kw)

    def test_replace_add_remove_with_value_paths(self):
        user = self.client.create(make_user("patch", home=f"{name_of('patch')}@home.example"))
        v0 = user.meta.version

        user2 = self.patch(user, PatchOperation(op="replace", path="displayName", value="New Display"), PatchOperation(op="replace", path="name.givenName", value="Renamed"))
        self.assertIsInstance(user2, FullUser, "PATCH answers 200 with the resource")
        self.assertEqual(user2.display_name, "New Display")
        self.assertEqual(user2.name.given_name, "Renamed")
        self.assertEqual(user2.name.family_name, "Family")
        self.assertNotEqual(user2.meta.version, v0)

        user3 = self.patch(user, PatchOperation(op="add", path="emails", value=[{"value": f"{name_of('patch')}@other.example", "type": "other"}]))
        self.assertEqual(sorted(e.type for e in user3.emails), ["home", "other", "work"])

        user4 = self.patch(user, PatchOperation(op="remove", path='emails[type eq "home"]'))
        self.assertEqual(sorted(e.type for e in user4.emails), ["other", "work"])

        user5 = self.patch(user, PatchOperation(op="replace", path='emails[type eq "work"].value', value=f"{name_of('patch')}@new-work.example"))
        work = [e.value for e in user5.emails if e.type == "work"]
        self.assertEqual(work, [f"{name_of('patch')}@new-work.example"])

        user6 = self.patch(user, PatchOperation(op="replace", path=f"{ENTERPRISE}:department", value="Emergency"))
        self.assertEqual(user6[EnterpriseUser].department, "Emergency")
        found = self.client.query(FullUser, query_parameters=SearchRequest(filter=f'userName eq "{user.user_name}" and {ENTERPRISE}:department eq "Emergency"'))
        self.assertEqual(found.total_results, 1)

        # A path-less replace whose value holds several attributes.
        user8 = self.patch(user, PatchOperation(op="replace", value={"nickName": "Babs", "title": "Charge Nurse"}))
        self.assertEqual((user8.nick_name, user8.title), ("Babs", "Charge Nurse"))

        # Several operations are applied atomically: one bad operation changes nothing.
        before = self.client.query(FullUser, user.id)
        with self.assertRaises(SCIMException) as ctx:
            self.client.modify(
                FullUser,
                user.id,
                {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
                    {"op": "replace", "path": "nickName", "value": "Changed"},
                    {"op": "replace", "path": "emails[type eq \"work\"", "value": "x"},
                ]},
                check_request_payload=False,
            )
        scim_error(self, ctx, 400)  # the scimType of a broken path: test_bad_patches_are_scim_errors
        after = self.client.query(FullUser, user.id)
        self.assertEqual(after.nick_name, "Babs")
        self.assertEqual(after.meta.version, before.meta.version)

    def test_remove_a_single_valued_attribute(self):
        user = self.client.create(make_user("remove-one"))
        self.assertEqual(user.display_name, "Display remove-one")
        removed = self.patch(user, PatchOperation(op="remove", path="displayName"))
        self.assertIsNone(removed.display_name, "RFC 7644 3.5.2.2: the attribute and its value are removed")
        self.assertIsNone(self.client.query(FullUser, user.id).display_name)

    def test_deactivate_with_patch(self):
        user = self.client.create(make_user("deactivate"))
        patched = self.patch(user, PatchOperation(op="replace", path="active", value=False))
        self.assertFalse(patched.active)
        self.assertFalse(self.client.query(FullUser, user.id).active)

    def test_bad_patches_are_scim_errors(self):
        user = self.client.create(make_user("badpatch"))
        raw = lambda *ops: {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": list(ops)}
        with self.assertRaises(SCIMException) as ctx:
            self.client.modify(FullUser, user.id, raw({"op": "remove"}), check_request_payload=False)
        scim_error(self, ctx, 400, "noTarget")
        with self.assertRaises(SCIMException) as ctx:
            self.client.modify(FullUser, user.id, raw({"op": "replace", "path": "emails[type eq]", "value": "x"}), check_request_payload=False)
        # RFC 7644 3.12 Table 9: invalidFilter applies to PATCH path filters (the part in brackets).
        scim_error(self, ctx, 400, "invalidFilter")
        with self.assertRaises(SCIMException) as ctx:
            self.client.modify(FullUser, user.id, raw({"op": "replace", "path": "name..givenName", "value": "x"}), check_request_payload=False)
        scim_error(self, ctx, 400, "invalidPath")
        with self.assertRaises(SCIMException) as ctx:
            self.client.modify(FullUser, user.id, raw({"op": "replace", "path": "id", "value": "x"}), check_request_payload=False)
        self.assertIn(ctx.exception.scim_type, ("mutability", "invalidPath"))
        with self.assertRaises(SCIMException) as ctx:
            self.client.modify(FullUser, user.id, raw({"op": "explode", "path": "title", "value": "x"}), check_request_payload=False)
        scim_error(self, ctx, 400)


    def test_removing_active_is_a_mutability_error(self):
        # RFC 7644 3.5.2: an attribute that would become unassigned although the service
        # provider needs it is a "mutability" error, not a silent no-op.
        user = self.client.create(make_user("keep-active"))
        raw = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "remove", "path": "active"}]}
        with self.assertRaises(SCIMException) as ctx:
            self.client.modify(FullUser, user.id, raw, check_request_payload=False)
        scim_error(self, ctx, 400, "mutability")
        after = self.client.query(FullUser, user.id)
        self.assertTrue(after.active)
        self.assertEqual(after.meta.version, user.meta.version)

    def test_enterprise_extension_patched_as_a_whole(self):
        user = self.client.create(make_user("ext-whole", department="Cardiology"))
        raw = lambda *ops: {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": list(ops)}
        added = self.client.modify(FullUser, user.id, raw({"op": "add", "path": ENTERPRISE, "value": {"division": "East"}}), check_request_payload=False)
        self.assertEqual(added[EnterpriseUser].division, "East")
        self.assertEqual(added[EnterpriseUser].department, "Cardiology", "attributes not named are left unchanged")
        replaced = self.client.modify(FullUser, user.id, raw({"op": "replace", "path": ENTERPRISE, "value": {"department": "Oncology"}}), check_request_payload=False)
        self.assertEqual(replaced[EnterpriseUser].department, "Oncology")
        self.assertEqual(replaced[EnterpriseUser].division, "East")
        removed = self.client.modify(FullUser, user.id, raw({"op": "remove", "path": ENTERPRISE}), check_request_payload=False)
        self.assertIsNone(removed[EnterpriseUser])
        self.assertNotIn(ENTERPRISE, removed.schemas)
        self.assertIsNone(self.client.query(FullUser, user.id)[EnterpriseUser])


class ETags(WithClient):

    def test_etag_header_is_meta_version(self):
        user = self.client.create(make_user("etag"))
        with http() as h:
            r = h.get(f"/Users/{user.id}")
            self.assertEqual(r.status_code, 200)
            self.assertEqual(r.headers.get("etag"), user.meta.version)
            self.assertEqual(r.json()["meta"]["version"], user.meta.version)

    def test_if_match_mismatch_is_412(self):
        user = self.client.create(make_user("ifmatch"))
        stale = user.model_copy(deep=True)
        self.client.modify(FullUser, user.id, PatchOp[FullUser](operations=[PatchOperation(op="replace", path="title", value="v2")]))
        # The client sends If-Match with the version the object carries.
        with self.assertRaises(SCIMException) as ctx:
            self.client.modify(stale, PatchOp[FullUser](operations=[PatchOperation(op="replace", path="title", value="v3")]))
        scim_error(self, ctx, 412)
        with self.assertRaises(SCIMException) as ctx:
            self.client.replace(stale)
        scim_error(self, ctx, 412)
        with self.assertRaises(SCIMException) as ctx:
            self.client.delete(stale)
        scim_error(self, ctx, 412)
        self.assertEqual(self.client.query(FullUser, user.id).title, "v2", "nothing changed")
        # With the current version the same write goes through.
        fresh = self.client.query(FullUser, user.id)
        done = self.client.modify(fresh, PatchOp[FullUser](operations=[PatchOperation(op="replace", path="title", value="v3")]))
        self.assertEqual(done.title, "v3")

    def test_if_none_match_is_304(self):
        user = self.client.create(make_user("ifnone"))
        current = self.client.query(FullUser, user.id)
        # The client makes the read conditional and returns its own object on 304.
        again = self.client.query(current)
        self.assertIs(again, current)
        with http() as h:
            r = h.get(f"/Users/{user.id}", headers={"If-None-Match": current.meta.version})
            self.assertEqual(r.status_code, 304)
            self.assertEqual(r.content, b"")
            r = h.get(f"/Users/{user.id}", headers={"If-None-Match": 'W/"not-the-version"'})
            self.assertEqual(r.status_code, 200)
        self.client.modify(FullUser, user.id, PatchOp[FullUser](operations=[PatchOperation(op="replace", path="title", value="changed")]))
        newer = self.client.query(current)
        self.assertIsNot(newer, current)
        self.assertEqual(newer.title, "changed")


class Bulk(WithClient):
    def test_bulk_with_bulk_id_reference_and_limits(self):
        from scim2_models import BulkOperation, BulkRequest

        req = BulkRequest[FullUser | Group](
            operations=[
                BulkOperation[FullUser](method="POST", path="/Users", bulk_id="u1", data=make_user("bulk-1")),
                BulkOperation[Group](
                    method="POST",
                    path="/Groups",
                    bulk_id="g1",
                    data=Group(display_name=name_of("bulk-group"), members=[GroupMember(type="User", value="bulkId:u1")]),
                ),
            ]
        )
        res = self.client.bulk(req)
        self.assertEqual([int(op.status) for op in res.operations], [201, 201], res)
        user_id = str(res.operations[0].location).rsplit("/", 1)[-1]
        group_id = str(res.operations[1].location).rsplit("/", 1)[-1]
        group = self.client.query(Group, group_id)
        self.assertEqual([m.value for m in group.members], [user_id], "bulkId:u1 resolved to the new user")

        limit = self.client.provider.config.bulk.max_operations
        too_many = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": f"x{i}", "data": {"schemas": [CORE_USER], "userName": name_of(f"bulk-x{i}")}}
                for i in range(limit + 1)
            ],
        }
        with http() as h:
            r = h.post("/Bulk", json=too_many, headers={"content-type": "application/scim+json"})
            self.assertEqual(r.status_code, 413, r.text)
            self.assertEqual(r.json()["schemas"], [ERROR_SCHEMA])


class Deletion(WithClient):

    def test_delete_then_404_and_the_name_is_free(self):
        user = self.client.create(make_user("delete"))
        self.assertIsNone(self.client.delete(FullUser, user.id))
        with self.assertRaises(SCIMException) as ctx:
            self.client.query(FullUser, user.id)
        exc = scim_error(self, ctx, 404)
        self.assertIsInstance(exc.error, Error)
        res = self.client.query(FullUser, query_parameters=SearchRequest(filter=f'userName eq "{user.user_name}"'))
        self.assertEqual(res.total_results, 0)
        with self.assertRaises(SCIMException) as ctx:
            self.client.delete(FullUser, user.id)
        scim_error(self, ctx, 404)
        again = self.client.create(make_user("delete"))
        self.assertNotEqual(again.id, user.id, "ids are never reused")


class Errors(WithClient):

    def test_unknown_id_is_404_scim_error(self):
        with self.assertRaises(SCIMException) as ctx:
            self.client.query(FullUser, "00000000-0000-7000-8000-000000000000")
        exc = scim_error(self, ctx, 404)
        self.assertEqual(exc.source.headers.get("content-type", "").split(";")[0], "application/scim+json")

    def test_invalid_resources_are_400(self):
        with self.assertRaises(SCIMException) as ctx:
            self.client.create(FullUser, {"schemas": [CORE_USER], "displayName": "no userName"}, check_request_payload=False, url="/Users")
        scim_error(self, ctx, 400)
        with self.assertRaises(SCIMException) as ctx:
            self.client.create(FullUser, {"schemas": ["urn:example:not-a-user"], "userName": name_of("wrong-schema")}, check_request_payload=False, url="/Users")
        scim_error(self, ctx, 400)
        with self.assertRaises(SCIMException) as ctx:
            self.client.create(FullUser, {"schemas": [CORE_USER], "userName": "x" * 100_000}, check_request_payload=False, url="/Users")
        self.assertIn(int(ctx.exception.status), (400, 413))
        with self.assertRaises(SCIMException) as ctx:
            self.client.create(FullUser, {"schemas": [CORE_USER], "userName": name_of("bad-active"), "active": "maybe"}, check_request_payload=False, url="/Users")
        scim_error(self, ctx, 400)

    def test_me_is_501(self):
        with http() as h:
            r = h.get("/Me")
            self.assertEqual(r.status_code, 501, r.text)
            self.assertEqual(r.json()["schemas"], [ERROR_SCHEMA])

    def test_authentication_and_scope(self):
        with http(token="wkt_not-a-real-token") as h:
            r = h.get("/Users")
            self.assertEqual(r.status_code, 401, r.text)
        with httpx2.Client(base_url=BASE, timeout=30) as h:
            self.assertEqual(h.get("/Users").status_code, 401)
        # A scim token reaches nothing else.
        root = BASE.rsplit("/scim/v2", 1)[0]
        with httpx2.Client(base_url=root, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as h:
            r = h.get("/api/v1/users")
            self.assertEqual(r.status_code, 403, r.text)


if __name__ == "__main__":
    if not BASE or not TOKEN:
        print("set WARDKEY_SCIM_URL and WARDKEY_SCIM_TOKEN", file=sys.stderr)
        sys.exit(2)
    program = unittest.main(exit=False, verbosity=2)
    result = program.result
    failed = len(result.failures) + len(result.errors)
    passed = result.testsRun - failed - len(result.skipped)
    print(f"scim2-client: {passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 and result.testsRun > 0 else 1)
