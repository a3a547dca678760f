#!/usr/bin/env python3
"""Generate src/apiserver/protobuf/table.rs: the schema the protobuf request decoder runs on.

Run by a developer (the output is committed), never by the build:

    python3 scripts/gen-protobuf-table.py [--kubectl PATH] [--extra-go-binary PATH ...]

By default it reads `kubectl.1.33` beside the `kubectl` on PATH (the machine image ships
versioned kubectl binaries), so the Go type data is of the same Kubernetes version as
k8s-openapi's v1_33. kubectl does not link the apiextensions and apiregistration types;
`anthoscli` from the same Cloud SDK folder does (an older apiextensions, whose fields keep
their Go types), and is read too when present. Without it those groups' zero scalars are
kept, and the generator says so.

It joins three sources, each for what it knows best, and fails loudly where they disagree:

* the `k8s-pb` crate (prost bindings of the Kubernetes .proto files): every message, its
  fields' tag numbers and wire types, and which message a field refers to;
* the `k8s-openapi` crate (feature v1_33): the JSON name of every field, the set of fields
  the Kubernetes version k3rs serves has (newer proto fields are left out, as a 1.33
  apiserver ignores them), and the (apiVersion, kind) of each top-level object;
* the Go type data inside a `kubectl` binary: for each field whether the Go struct holds it
  as a pointer and whether its JSON tag says `omitempty`, and which fields are `,inline`.
  Go's protobuf encoder writes every non-pointer field, even a zero one, while Go's JSON
  encoder drops zero `omitempty` fields: the decoder needs this to produce the JSON an
  upstream apiserver would see (no `"generateName": ""`, but `"replicas": 0` kept).

Fields are matched between the crates by name normalised to lowercase letters and digits.
"""

import argparse
import glob
import os
import re
import shutil
import struct
import sys
from collections import OrderedDict

PB_VERSION = "0.9.0"
OPENAPI_VERSION = "0.29.0"
OPENAPI_FEATURE = "v1_33"

# Messages whose JSON form is not an object of their fields. Each is checked against k8s-pb:
# name -> (special kind, expected fields as {tag: (rust name, prost kind, cardinality)}).
META = "k8s.io.apimachinery.pkg.apis.meta.v1"
APIEXT = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1"
SPECIALS = {
    f"{META}.Time": ("Time", {1: ("seconds", "int64", "one"), 2: ("nanos", "int32", "one")}),
    f"{META}.MicroTime": ("MicroTime", {1: ("seconds", "int64", "one"), 2: ("nanos", "int32", "one")}),
    f"{META}.Duration": ("Duration", {1: ("duration", "int64", "one")}),
    f"{META}.FieldsV1": ("EmbeddedJson", {1: ("raw", "bytes", "one")}),
    "k8s.io.apimachinery.pkg.runtime.RawExtension": ("EmbeddedJson", {1: ("raw", "bytes", "one")}),
    f"{APIEXT}.JSON": ("EmbeddedJson", {1: ("raw", "bytes", "one")}),
    "k8s.io.apimachinery.pkg.api.resource.Quantity": ("Quantity", {1: ("string", "string", "one")}),
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": (
        "IntOrString",
        {1: ("type", "int64", "one"), 2: ("int_val", "int32", "one"), 3: ("str_val", "string", "one")},
    ),
    f"{APIEXT}.JSONSchemaPropsOrArray": (
        "SchemaOrArray",
        {1: ("schema", "message", "one"), 2: ("j_son_schemas", "message", "rep")},
    ),
    f"{APIEXT}.JSONSchemaPropsOrBool": (
        "SchemaOrBool",
        {1: ("allows", "bool", "one"), 2: ("schema", "message", "one")},
    ),
    f"{APIEXT}.JSONSchemaPropsOrStringArray": (
        "SchemaOrStringArray",
        {1: ("schema", "message", "one"), 2: ("property", "string", "rep")},
    ),
}

# Kinds of meta.k8s.io/v1 that Go clients send under any group's apiVersion.
META_BODY_KINDS = ["DeleteOptions"]

# Proto packages whose Go package path is not the plain translation.
GO_PKG_PREFIXES = [
    ("k8s.io.apiextensions_apiserver.", "k8s.io/apiextensions-apiserver/"),
    ("k8s.io.kube_aggregator.", "k8s.io/kube-aggregator/"),
]

SCALARS = {"string", "bytes", "bool", "int32", "int64", "double"}


def fail(msg):
    sys.stderr.write(f"gen-protobuf-table: {msg}\n")
    sys.exit(1)


def norm(name):
    return re.sub(r"[^a-z0-9]", "", name.lower())


def find_crate(name, version):
    roots = glob.glob(os.path.expanduser(f"~/.cargo/registry/src/*/{name}-{version}"))
    if not roots:
        fail(f"{name} {version} is not in ~/.cargo/registry/src: run `cargo info {name}@{version}` "
             f"or `cargo fetch` first")
    return roots[0]


# ----------------------------------------------------------------------------- k8s-pb


class PbField:
    def __init__(self, rust, tag, kind, card, msg):
        self.rust, self.tag, self.kind, self.card, self.msg = rust, tag, kind, card, msg


def resolve_rust_path(modpath, path):
    """Turn a prost type path seen in module `modpath` into a proto full name."""
    parts = path.split("::")
    up = 0
    while parts and parts[0] == "super":
        up += 1
        parts = parts[1:]
    if up > len(modpath):
        fail(f"cannot resolve {path} from {'::'.join(modpath)}")
    base = modpath[: len(modpath) - up] + parts[:-1]
    return "k8s.io." + ".".join(base) + "." + parts[-1]


def message_path(ty):
    """The message path inside a prost field type, dropping std/prost wrappers."""
    for tok in re.findall(r"(?:(?:super|crate)::)*[A-Za-z_][\w]*(?:::[A-Za-z_][\w]*)*", ty):
        if tok.split("::")[0] in ("core", "prost", "alloc", "std", "Box", "Option", "Vec", "BTreeMap", "String"):
            continue
        if tok.split("::")[-1][:1].isupper():
            return tok
    return None


def parse_pb(root):
    messages, kinds = {}, []
    for path in sorted(glob.glob(os.path.join(root, "src", "**", "mod.rs"), recursive=True)):
        rel = os.path.relpath(os.path.dirname(path), os.path.join(root, "src"))
        if rel == ".":
            continue
        modpath = rel.split(os.sep)
        pkg = "k8s.io." + ".".join(modpath)
        text = open(path, encoding="utf-8").read()
        for m in re.finditer(r"\npub struct (\w+) \{(?:\}|\n(.*?)\n\})", text, re.S):
            name, body = m.group(1), m.group(2) or ""
            body = "\n".join(l for l in body.split("\n") if not l.strip().startswith("///"))
            fields = []
            for chunk in body.split("#[prost(")[1:]:
                attr, rest = chunk.split(")]", 1)
                fm = re.match(r"\s*pub (?:r#)?(\w+):\s*(.*)", rest, re.S)
                if not fm:
                    fail(f"{pkg}.{name}: cannot parse field after #[prost({attr})]")
                rust, ty = fm.group(1), fm.group(2)
                tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
                mm = re.match(r'btree_map = "(\w+), (\w+)"', attr)
                if mm:
                    if mm.group(1) != "string":
                        fail(f"{pkg}.{name}.{rust}: map key {mm.group(1)} is not string")
                    kind, card = mm.group(2), "map"
                else:
                    kind = re.match(r"(\w+)", attr).group(1)
                    if "repeated" in attr:
                        card = "rep"
                    elif "optional" in attr:
                        card = "one"
                    else:
                        fail(f"{pkg}.{name}.{rust}: unexpected prost attribute {attr}")
                msg = None
                if kind == "message":
                    mp = message_path(ty)
                    if mp is None:
                        fail(f"{pkg}.{name}.{rust}: no message type in {ty!r}")
                    msg = resolve_rust_path(modpath, mp) if "::" in mp else f"{pkg}.{mp}"
                elif kind not in SCALARS:
                    fail(f"{pkg}.{name}.{rust}: unsupported prost kind {kind}")
                fields.append(PbField(rust, tag, kind, card, msg))
            messages[f"{pkg}.{name}"] = fields
        for m in re.finditer(r'impl crate::Resource for (\w+) \{.*?API_VERSION: &\'static str = "(.*?)";'
                             r'.*?KIND: &\'static str = "(.*?)";', text, re.S):
            kinds.append((m.group(2), m.group(3), f"{pkg}.{m.group(1)}"))
    return messages, kinds


# ----------------------------------------------------------------------------- k8s-openapi


class OpenApiDef:
    def __init__(self, json_names, rust_of):
        self.json_names = json_names  # list, None for types with a custom JSON form
        self.rust_of = rust_of  # json name -> k8s-openapi rust field name


def parse_openapi(root):
    defs, kinds = {}, []
    for path in sorted(glob.glob(os.path.join(root, "src", OPENAPI_FEATURE, "**", "*.rs"), recursive=True)):
        text = open(path, encoding="utf-8").read()
        m = re.match(r"// Generated from definition (\S+)", text)
        if not m:
            continue
        defname = m.group(1)
        if not defname.startswith("io.k8s."):
            fail(f"unexpected definition name {defname}")
        proto = "k8s.io." + defname[len("io.k8s."):].replace("-", "_")
        names = None
        sm = re.search(r'deserializer\.deserialize_struct\(\s*(?:"\w+"|<Self as crate::Resource>::KIND),\s*&\[(.*?)\]', text, re.S)
        if sm:
            names = re.findall(r'"([^"]+)"', sm.group(1))
        rust_of = dict(re.findall(r'"([^"]+)" => Field::Key_(\w+),', text))
        defs[proto] = OpenApiDef(names, rust_of)
        for r in re.finditer(r'impl crate::Resource for (\w+) \{.*?API_VERSION: &\'static str = "(.*?)";'
                             r'.*?KIND: &\'static str = "(.*?)";', text, re.S):
            kinds.append((r.group(2), r.group(3), proto))
    return defs, kinds


# ----------------------------------------------------------------------------- kubectl (Go)


class GoField:
    def __init__(self, json, omitempty, inline, go_kind):
        self.json, self.omitempty, self.inline, self.go_kind = json, omitempty, inline, go_kind


GO_KIND_PTR, GO_KIND_SLICE, GO_KIND_STRUCT, GO_KIND_MAP = 22, 23, 25, 21


def parse_go_types(binary, check=True):
    """Struct types with protobuf tags, read from the Go runtime type data of a binary.

    Layout (Go 1.21+, amd64): abi.Type is 48 bytes (Kind_ at 23, TFlag at 20, Str name offset
    at 40); a struct type follows it with PkgPath (8) and Fields (slice, 24), then the
    uncommon type (PkgPath name offset first) for named types; a field is
    {Name *byte, Typ *Type, Offset uintptr}. Names are a flag byte, varint length, bytes,
    then (flag 2) a varint-prefixed tag. Name offsets count from the start of .rodata.
    """
    data = open(binary, "rb").read()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        fail(f"{binary} is not a 64-bit ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = []
    for i in range(shnum):
        sh = struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
        sections.append(sh)
    strtab = sections[shstrndx]
    def secname(sh):
        o = strtab[4] + sh[0]
        return data[o:data.index(b"\0", o)].decode()
    ro = next((s for s in sections if secname(s) == ".rodata"), None)
    if ro is None:
        fail(f"{binary} has no .rodata section")
    base, off, size = ro[3], ro[4], ro[5]
    rod = data[off:off + size]

    def inro(a):
        return base <= a < base + size

    def u64(a):
        return struct.unpack_from("<Q", rod, a - base)[0]

    def i32(a):
        return struct.unpack_from("<i", rod, a - base)[0]

    def varint(a):
        v = s = 0
        while True:
            b = rod[a - base]
            a += 1
            v |= (b & 0x7F) << s
            s += 7
            if b < 0x80:
                return v, a

    def name(a):
        flags = rod[a - base]
        n, p = varint(a + 1)
        nm = rod[p - base:p - base + n].decode("utf-8", "replace")
        p += n
        tag = ""
        if flags & 2:
            t, p = varint(p)
            tag = rod[p - base:p - base + t].decode("utf-8", "replace")
        return nm, tag

    structs = {}
    for a in range(base, base + size - 96, 8):
        if rod[a - base + 23] & 31 != GO_KIND_STRUCT or not rod[a - base + 20] & 1:
            continue
        fp, ln, cp = u64(a + 56), u64(a + 64), u64(a + 72)
        if not (inro(fp) and ln == cp and 0 < ln < 400 and inro(fp + 24 * ln)):
            continue
        try:
            fields = []
            for i in range(ln):
                np, tp = u64(fp + 24 * i), u64(fp + 24 * i + 8)
                if not (inro(np) and inro(tp)):
                    raise ValueError
                fields.append((name(np), rod[tp - base + 23] & 31))
            if not any('protobuf:"' in tag for (_, tag), _ in fields):
                continue
            tname, _ = name(base + i32(a + 40))
            pkg, _ = name(base + i32(a + 80))
        except (ValueError, IndexError, struct.error):
            continue
        tname = tname.lstrip("*").split(".")[-1]
        gofields = {}
        for (fname, tag), kind in fields:
            pm = re.search(r'protobuf:"\w+,(\d+),', tag)
            jm = re.search(r'json:"([^"]*)"', tag)
            if not pm or not jm:
                continue
            jparts = jm.group(1).split(",")
            gofields[int(pm.group(1))] = GoField(jparts[0], "omitempty" in jparts[1:], "inline" in jparts[1:], kind)
        structs[(pkg, tname)] = gofields
    om = structs.get(("k8s.io/apimachinery/pkg/apis/meta/v1", "ObjectMeta"))
    if not check:
        return structs
    if not om or om.get(1) is None or om[1].json != "name" or om[7].go_kind != 6:
        fail(f"Go type data of {binary} was not understood (no sane meta/v1.ObjectMeta)")
    return structs


def proto_of_go(pkg, name):
    for pfx, gopfx in GO_PKG_PREFIXES:
        if pkg.startswith(gopfx):
            return pfx + pkg[len(gopfx):].replace("/", ".") + "." + name
    return pkg.replace("/", ".") + "." + name


def canonical_names(pb, openapi, go):
    """prost renames messages (GCEPersistentDiskVolumeSource -> GcePersistentDiskVolumeSource):
    take the real names from k8s-openapi and Go, which keep the proto spelling."""
    canon = {}
    for proto in list(openapi) + [proto_of_go(*k) for k in go] + list(SPECIALS):
        pkg, name = proto.rsplit(".", 1)
        canon.setdefault((pkg, name.lower()), proto)

    def rename(proto):
        pkg, name = proto.rsplit(".", 1)
        return canon.get((pkg, name.lower()), proto)

    out = {}
    for proto, fields in pb.items():
        for f in fields:
            if f.msg:
                f.msg = rename(f.msg)
        out[rename(proto)] = fields
    return out, rename


def go_struct_key(proto):
    pkg, name = proto.rsplit(".", 1)
    for pfx, gopfx in GO_PKG_PREFIXES:
        if pkg.startswith(pfx):
            return gopfx + pkg[len(pfx):].replace(".", "/"), name
    return "k8s.io/" + pkg[len("k8s.io."):].replace(".", "/"), name


# ----------------------------------------------------------------------------- join


class OutField:
    def __init__(self, tag, json, kind, card, msg, omit_zero, inline):
        self.tag, self.json, self.kind, self.card, self.msg = tag, json, kind, card, msg
        self.omit_zero, self.inline = omit_zero, inline

    def key(self):
        return (self.tag, self.json, self.kind, self.card, self.msg, self.omit_zero, self.inline)


class Builder:
    def __init__(self, pb, openapi, go):
        self.pb, self.openapi, self.go = pb, openapi, go
        self.out = OrderedDict()  # proto name -> ("Fields", [OutField]) | (special, None)
        self.newer = []  # proto fields newer than the served version, left out
        self.dropped = []  # served alpha/beta JSON fields that k8s-pb no longer has
        self.no_go = set()  # messages without Go type data
        self.pending = []

    def require(self, proto):
        if proto not in self.out and proto not in self.pending:
            self.pending.append(proto)

    def run(self):
        while self.pending:
            proto = self.pending.pop(0)
            if proto in self.out:
                continue
            self.build(proto)

    def build(self, proto):
        if proto not in self.pb:
            fail(f"{proto} is referenced but not in k8s-pb")
        fields = self.pb[proto]
        if proto in SPECIALS:
            special, expect = SPECIALS[proto]
            got = {f.tag: (f.rust, f.kind, f.card) for f in fields}
            if got != expect:
                fail(f"{proto}: k8s-pb fields {got} differ from the expected {expect}")
            self.out[proto] = (special, self.plain(fields))
            return
        od = self.openapi.get(proto)
        if od is None:
            # Go named slices ([]string) get a wrapper message in proto, an array in JSON.
            if len(fields) == 1 and fields[0].rust == "items" and fields[0].card == "rep" \
                    and fields[0].kind == "string" and fields[0].tag == 1:
                self.out[proto] = ("StringList", self.plain(fields))
                return
            fail(f"{proto} has no k8s-openapi definition and is not a known special form")
        if od.json_names is None and not fields:
            self.out[proto] = ("Fields", [])  # an empty Go struct: always `{}`
            return
        if od.json_names is None:
            fail(f"{proto} has a custom JSON form in k8s-openapi but is not in SPECIALS")
        available = set(od.json_names)
        used = set()
        self.out[proto] = ("Fields", self.resolve(proto, fields, od, available, used))
        # apiVersion and kind of top-level objects come from the envelope, not the message.
        missing = sorted(available - used - {"apiVersion", "kind"})
        if missing:
            # Alpha and beta fields can be dropped from later protos; k8s-pb is newer than
            # the served version, so such a field cannot be decoded. A GA field must be there.
            if re.search(r"\.v\d+(alpha|beta)\d+\.", proto):
                self.dropped.append(f"{proto}: {', '.join(missing)}")
            else:
                fail(f"{proto}: JSON fields {missing} have no proto field in k8s-pb")

    def plain(self, fields):
        """Fields of a message with its own JSON form: named after the proto field."""
        for f in fields:
            if f.msg:
                self.require(f.msg)
        return [OutField(f.tag, f.rust, f.kind, f.card, f.msg, False, False) for f in fields]

    def inlinable(self, f, available):
        """Without Go type data: a message field whose own fields all bear parent JSON names."""
        if f.kind != "message" or f.card != "one" or f.msg in SPECIALS:
            return False
        sub = self.pb.get(f.msg, [])
        names = {norm(n) for n in available}
        return bool(sub) and all(norm(x.rust) in names or self.inlinable(x, available) for x in sub)

    def resolve(self, proto, fields, od, available, used):
        """Match proto fields to JSON names of `od`; inline messages draw from the same names."""
        gof = self.go.get(go_struct_key(proto))
        if gof is None:
            self.no_go.add(proto)
        by_norm = {}
        for n in available:
            by_norm.setdefault(norm(n), []).append(n)
            if od.rust_of.get(n):
                by_norm.setdefault(norm(od.rust_of[n]), []).append(n)
        out = []
        for f in fields:
            g = gof.get(f.tag) if gof else None
            cands = sorted(set(by_norm.get(norm(f.rust), [])))
            if g is not None and g.inline or (g is None and not cands and self.inlinable(f, available)):
                if f.msg is None:
                    fail(f"{proto}.{f.rust}: inline field is not a message")
                sub = self.resolve(f.msg, self.pb[f.msg], od, available, used)
                prev = self.out.get(f.msg)
                if prev is not None and [x.key() for x in prev[1]] != [x.key() for x in sub]:
                    fail(f"{f.msg} is inlined into parents that name its fields differently")
                self.out[f.msg] = ("Fields", sub)
                out.append(OutField(f.tag, "", "message", "one", f.msg, False, True))
                continue
            if not cands:
                if g is not None:
                    fail(f"{proto}.{f.rust} (tag {f.tag}): Go names it {g.json!r}, k8s-openapi has no such field")
                self.newer.append(f"{proto}.{f.rust}")
                continue
            if len(cands) > 1:
                fail(f"{proto}.{f.rust}: ambiguous JSON names {cands}")
            json = cands[0]
            if json in used:
                fail(f"{proto}: JSON name {json} matched twice")
            if g is not None and g.json != json:
                fail(f"{proto}.{f.rust} (tag {f.tag}): Go JSON name {g.json!r} != k8s-openapi {json!r}")
            used.add(json)
            omit_zero = False
            if g is not None and g.omitempty and g.go_kind != GO_KIND_PTR and f.card == "one" \
                    and f.kind in SCALARS:
                omit_zero = True
            if f.msg:
                self.require(f.msg)
            out.append(OutField(f.tag, json, f.kind, f.card, f.msg, omit_zero, False))
        return out


# ----------------------------------------------------------------------------- output

SCALAR_TY = {"string": "Ty::String", "bytes": "Ty::Bytes", "bool": "Ty::Bool", "int32": "Ty::Int32",
             "int64": "Ty::Int64", "double": "Ty::Double"}


def render(builder, kinds, sources):
    order = sorted(builder.out)
    index = {name: i for i, name in enumerate(order)}
    lines = [
        "// @generated by scripts/gen-protobuf-table.py: do not edit by hand.",
        f"// Sources: {sources}.",
        "",
        "use super::schema::{Field, Form, Message, Ty};",
        "",
        "const fn f(tag: u32, json: &'static str, ty: Ty, flags: u8) -> Field {",
        "    Field { tag, json, ty, flags }",
        "}",
        "",
        "const R: u8 = Field::REPEATED;",
        "const M: u8 = Field::MAP;",
        "const Z: u8 = Field::OMIT_ZERO;",
        "const I: u8 = Field::INLINE;",
        "",
        f"pub(super) static MESSAGES: [Message; {len(order)}] = [",
    ]
    for name in order:
        form, fields = builder.out[name]
        lines.append(f'    Message {{ name: "{name}", form: Form::{form}, fields: &[')
        for fl in sorted(fields, key=lambda x: x.tag):
            ty = f"Ty::Message({index[fl.msg]})" if fl.kind == "message" else SCALAR_TY[fl.kind]
            flags = [x for x, on in (("R", fl.card == "rep"), ("M", fl.card == "map"),
                                     ("Z", fl.omit_zero), ("I", fl.inline)) if on]
            lines.append(f'        f({fl.tag}, "{fl.json}", {ty}, {" | ".join(flags) or "0"}),')
        lines.append("    ] },")
    lines.append("];")
    lines.append("")
    lines.append("/// (apiVersion, kind) of every object a request body may hold, sorted, with its message.")
    lines.append(f"pub(super) static KINDS: [(&str, &str, u16); {len(kinds)}] = [")
    for api_version, kind, proto in kinds:
        lines.append(f'    ("{api_version}", "{kind}", {index[proto]}),')
    lines.append("];")
    lines.append("")
    lines.append("/// meta.k8s.io/v1 kinds that Go clients send under any group's apiVersion.")
    lines.append(f"pub(super) static META_KINDS: [(&str, u16); {len(META_BODY_KINDS)}] = [")
    for kind in META_BODY_KINDS:
        lines.append(f'    ("{kind}", {index[f"{META}.{kind}"]}),')
    lines.append("];")
    return "\n".join(lines) + "\n"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kubectl", help="a Go kubectl binary (of Kubernetes 1.33) to read Go type data from")
    ap.add_argument("--extra-go-binary", action="append", default=None,
                    help="more Go binaries for types kubectl lacks (default: anthoscli beside kubectl)")
    ap.add_argument("--out", default=os.path.join(here, "..", "src", "apiserver", "protobuf", "table.rs"))
    args = ap.parse_args()

    pb_root = find_crate("k8s-pb", PB_VERSION)
    oa_root = find_crate("k8s-openapi", OPENAPI_VERSION)
    pb, _pb_kinds = parse_pb(pb_root)
    openapi, oa_kinds = parse_openapi(oa_root)
    kubectl = args.kubectl
    if kubectl is None:
        found = shutil.which("kubectl")
        if found is None:
            fail("no kubectl on PATH: pass --kubectl")
        kubectl = os.path.join(os.path.dirname(os.path.realpath(found)), "kubectl.1.33")
    kubectl = os.path.realpath(kubectl)
    if not os.path.isfile(kubectl):
        fail(f"{kubectl} does not exist: pass --kubectl")
    go = parse_go_types(kubectl)
    extra = args.extra_go_binary
    if extra is None:
        candidate = os.path.join(os.path.dirname(kubectl), "anthoscli")
        extra = [candidate] if os.path.isfile(candidate) else []
    for binary in extra:
        more = parse_go_types(os.path.realpath(binary), check=False)
        added = {k: v for k, v in more.items() if k not in go}
        sys.stderr.write(f"{binary}: {len(added)} more Go struct types\n")
        go.update(added)
    # The binary names many module versions; the Kubernetes one is what matters here.
    versions = sorted(set(re.findall(rb"\bv1\.33\.\d+\b", open(kubectl, "rb").read())))
    version = versions[-1].decode() if versions else "of unknown version"
    if not versions:
        sys.stderr.write(f"warning: {kubectl} does not look like kubectl 1.33\n")

    pb, _rename = canonical_names(pb, openapi, go)
    builder = Builder(pb, openapi, go)
    kinds, skipped_kinds = [], []
    for api_version, kind, proto in oa_kinds:
        if proto not in pb:
            skipped_kinds.append(f"{api_version} {kind}")
            continue
        kinds.append((api_version, kind, proto))
        builder.require(proto)
    for kind in META_BODY_KINDS:
        builder.require(f"{META}.{kind}")
    builder.run()
    kinds.sort()
    for a, b in zip(kinds, kinds[1:]):
        if a[:2] == b[:2]:
            fail(f"duplicate kind {a[:2]}")

    sources = (f"k8s-pb {PB_VERSION}, k8s-openapi {OPENAPI_VERSION} ({OPENAPI_FEATURE}), "
               f"Go type data of kubectl {version}")
    out = render(builder, kinds, sources)
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write(out)

    nfields = sum(len(f) for _, f in builder.out.values())
    sys.stderr.write(f"wrote {args.out}: {len(builder.out)} messages, {nfields} fields, {len(kinds)} kinds\n")
    if skipped_kinds:
        sys.stderr.write(f"kinds without a k8s-pb message (left out): {', '.join(skipped_kinds)}\n")
    sys.stderr.write(f"served alpha/beta JSON fields missing from k8s-pb (not decodable): {len(builder.dropped)}\n")
    for n in builder.dropped:
        sys.stderr.write(f"  {n}\n")
    sys.stderr.write(f"proto fields newer than {OPENAPI_FEATURE} (left out): {len(builder.newer)}\n")
    for n in builder.newer:
        sys.stderr.write(f"  {n}\n")
    no_go = sorted(m for m in builder.no_go if builder.out.get(m, ("",))[0] == "Fields")
    sys.stderr.write(f"messages without Go type data (zero scalars kept): {len(no_go)}\n")
    for n in no_go:
        sys.stderr.write(f"  {n}\n")


if __name__ == "__main__":
    main()
