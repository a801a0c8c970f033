"""Records in real file formats, and plain questions about them.

An archive is a concatenation of documents, each preceded by a header line naming its file (as
`tail` prints several files).  Documents come from the machine's own files where they exist
(/etc/services, /etc/protocols, /etc/passwd, /var/lib/dpkg/status, /usr/share/doc/*/changelog.Debian.gz,
/usr/share/doc/*/copyright, man pages) and from generators of ordinary formats (CSV, INI, JSON).
Each document comes with its questions: {q, golds, kind, fact, evidence [(start, end)]}.

Domains are split (common.py): TRAIN_DOMAINS feed training and the "seen" evaluation; HELD_DOMAINS
are never trained on.  Within a train domain the last HELD_Q question families are held out too.

    docs = gather_docs(rng, split, root="/")            # [(path, text, questions)]
    text, qs = make_archive(rng, split, target_bytes, root="/")
"""
import glob
import gzip
import json
import os
import re

from common import ABSTAIN, date_forms, families, pool, roughen, synonymize, value_split

HELD_Q = 2


def _read(path, gz=False, limit=2_000_000):
    try:
        if gz:
            with gzip.open(path, "rb") as f:
                return f.read(limit).decode("utf-8", "replace")
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except (OSError, EOFError):
        return None


def _q(q, golds, kind, span, fact):
    return dict(q=q, golds=golds, kind=kind, fact=fact, evidence=[span])


def _find(text, needle, start=0):
    i = text.find(needle, start)
    if i < 0:
        raise ValueError("not found: %r" % needle)
    return i, i + len(needle)


# ---- /var/lib/dpkg/status --------------------------------------------------------------------------

PKG_ASK = {
    "Version": ["What version of {p} is installed?", "Which {p} version do we have?",
                "{p} is at what version?", "What's the installed version of the {p} package?",
                "Tell me the version number of {p}.", "Which release of {p} is on this system?"],
    "Maintainer": ["Who maintains {p}?", "Who is the maintainer of the {p} package?",
                   "Which person looks after the {p} package?", "Who's listed as maintainer for {p}?",
                   "Who takes care of packaging {p}?", "Whom should I contact about the {p} package?"],
    "Homepage": ["What's the homepage of {p}?", "Where is {p}'s website?", "What URL is the {p} project at?",
                 "Where can I read more about {p} online?", "Which web page belongs to {p}?",
                 "Give me the project site for {p}."],
    "Section": ["Which section is {p} in?", "What archive section does {p} belong to?",
                "Under which section is the {p} package filed?", "What category is {p} packaged under?",
                "In what section of the archive is {p}?", "Which section lists {p}?"],
}


def dpkg_docs(rng, split, root):
    text = _read(os.path.join(root, "var/lib/dpkg/status"))
    if not text:
        return []
    stanzas = [s for s in text.split("\n\n") if s.startswith("Package:")]
    rng.shuffle(stanzas)
    docs = []
    for k in range(0, min(len(stanzas), 240), 12):
        body = "\n\n".join(stanzas[k:k + 12]) + "\n"
        qs = []
        for st in stanzas[k:k + 12]:
            f = dict(re.findall(r"^([A-Za-z-]+): (.*)$", st, flags=re.M))
            p = f.get("Package")
            if not p or value_split(p) != split and split is not None:
                continue
            field = rng.choice([x for x in PKG_ASK if x in f] or ["Version"])
            if field not in f:
                continue
            gold = f[field]
            if field == "Maintainer":
                gold = gold.split("<")[0].strip()
            if not gold:
                continue
            base = body.find("Package: %s\n" % p)
            span = _find(body, "%s: %s" % (field, f[field]), base)
            qt = rng.choice(families(PKG_ASK[field], split, HELD_Q))
            qs.append(_q(qt.format(p=p), [gold], "fact", span, "dpkg." + field))
        docs.append(("/var/lib/dpkg/status", body, qs))
    return docs


# ---- /etc/services ---------------------------------------------------------------------------------

SVC_PORT = ["Which port does {s} use?", "What port number is assigned to {s}?", "On which port does {s} listen?",
            "What's the {proto} port for {s}?", "Tell me the port of the {s} service.", "{s} runs on which port?"]
SVC_NAME = ["Which service uses port {port}/{proto}?", "What is registered on {proto} port {port}?",
            "What service name goes with port {port}?", "Port {port} over {proto} belongs to which service?",
            "What runs on port {port} ({proto})?", "Name the service on {proto} port {port}."]


def services_docs(rng, split, root):
    text = _read(os.path.join(root, "etc/services"))
    if not text:
        return []
    lines = text.split("\n")
    docs = []
    for k in range(0, len(lines), 120):
        body = "\n".join(lines[k:k + 120]) + "\n"
        qs, seen = [], set()
        recs = re.findall(r"^([a-z0-9][\w.+-]*)\s+(\d+)/(tcp|udp)", body, flags=re.M)
        for name, port, proto in rng.sample(recs, min(len(recs), 6)):
            if split is not None and value_split(name) != split:
                continue
            if name in seen or sum(1 for r in recs if r[0] == name) > 2:
                continue
            seen.add(name)
            m = re.search(r"^%s\s+%s/%s.*$" % (re.escape(name), port, proto), body, flags=re.M)
            span = (m.start(), m.end())
            if rng.random() < 0.6 or sum(1 for r in recs if r[1] == port and r[2] == proto) > 1:
                qt = rng.choice(families(SVC_PORT, split, HELD_Q))
                qs.append(_q(qt.format(s=name, proto=proto), [port], "fact", span, "services.port"))
            else:
                qt = rng.choice(families(SVC_NAME, split, HELD_Q))
                qs.append(_q(qt.format(port=port, proto=proto), [name], "fact", span, "services.name"))
        docs.append(("/etc/services", body, qs))
    return docs


# ---- changelog.Debian ------------------------------------------------------------------------------

CL_WHO = ["Who signed the {v} upload of {p}?", "Who made the {p} {v} release?", "Which person uploaded {p} version {v}?",
          "Who is the author of the changelog entry for {p} {v}?", "Who packaged version {v} of {p}?",
          "Whose name is on the {p} {v} changelog entry?"]
CL_WHEN = ["When was {p} {v} uploaded?", "On what date was version {v} of {p} released?", "When did {p} {v} come out?",
           "What is the date of the {p} {v} changelog entry?", "When was the {v} release of {p} signed?",
           "What day was {p} {v} published?"]
_SIG = re.compile(r"^ -- (.+?) <[^>]*>  \w{3}, (\d{1,2}) (\w{3}) (\d{4})", re.M)
_MON = {m: i + 1 for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())}


def changelog_docs(rng, split, root):
    files = sorted(glob.glob(os.path.join(root, "usr/share/doc/*/changelog.Debian.gz")))
    rng.shuffle(files)
    docs = []
    for fn in files[:160]:
        text = _read(fn, gz=True, limit=20_000)
        if not text:
            continue
        entries = list(re.finditer(r"^(\S+) \(([^)]+)\) [^\n]*\n(.*?)^ -- [^\n]*\n", text, flags=re.M | re.S))
        if not entries:
            continue
        body = text[:entries[min(len(entries), 6) - 1].end()]
        qs = []
        e = rng.choice(entries[:min(len(entries), 6)])
        p, v = e.group(1), e.group(2)
        if split is not None and value_split(p) != split:
            continue
        m = _SIG.search(body, e.start())
        if not m or m.start() > e.end():
            continue
        span = (e.start(), m.end())
        if rng.random() < 0.5:
            qt = rng.choice(families(CL_WHO, split, HELD_Q))
            qs.append(_q(qt.format(p=p, v=v), [m.group(1)], "fact", span, "changelog.who"))
        else:
            y, mo, d = int(m.group(4)), _MON.get(m.group(3), 1), int(m.group(2))
            qt = rng.choice(families(CL_WHEN, split, HELD_Q))
            written = "%s %s %s" % (m.group(2), m.group(3), m.group(4))   # the answer copies it
            qs.append(_q(qt.format(p=p, v=v), [written] + date_forms(y, mo, d)[:3], "fact", span, "changelog.when"))
        docs.append((fn[len(root.rstrip("/")):], body, qs))
    return docs


# ---- man pages: "which command does X" --------------------------------------------------------------

MAN_ASK = ["Which command would I use to {d}?", "What's the tool to {d}?", "Which program can {d}?",
           "I need to {d} - what command is that?", "Name the utility that can {d}.", "How do I {d}? Which command?"]


def man_docs(rng, split, root):
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train"))
    from make_corpus import strip_troff, to_ascii
    files = sorted(glob.glob(os.path.join(root, "usr/share/man/man1/*.1.gz")) +
                   glob.glob(os.path.join(root, "usr/share/man/man8/*.8.gz")))
    rng.shuffle(files)
    docs, per = [], {}
    for fn in files:
        if len(docs) >= 150:
            break
        cmd = os.path.basename(fn).split(".")[0]
        pre = re.split(r"[-_]", cmd)[0]
        per[pre] = per.get(pre, 0) + 1
        if per[pre] > 2 or (split is not None and value_split(cmd) != split):
            continue
        src = _read(fn, gz=True, limit=60_000)
        if not src:
            continue
        text = to_ascii(strip_troff(src))[:4000]
        m = re.search(r"^\s*%s \\?- (.+)$" % re.escape(cmd), text, flags=re.M) or \
            re.search(r"^\s*%s - (.+)$" % re.escape(cmd), text, flags=re.M)
        if not m:
            continue
        d = m.group(1).strip().rstrip(".")
        if not re.match(r"^[a-z]+s? ", d) or len(d) > 70:
            continue
        verb = d.split()[0]
        if verb.endswith("s") and not verb.endswith("ss"):   # "copies files" -> "copy files"
            verb = verb[:-3] + "y" if verb.endswith("ies") else verb[:-1]
        d = " ".join([verb] + d.split()[1:])
        qt = rng.choice(families(MAN_ASK, split, HELD_Q))
        docs.append(("/usr/share/man/" + os.path.basename(fn)[:-3], text,
                     [_q(qt.format(d=d), [cmd], "fact", (m.start(), m.end()), "man.command")]))
    return docs


# ---- generated formats: CSV staff table, INI configuration, JSON inventory ---------------------------

PEOPLE = ("Alvarez Brennan Chowdhury Dubois Eriksen Fischer Gallagher Horvat Ibrahim Jansen Kowalczyk Larsen "
          "Morales Nakamura Okonkwo Petrov Quinlan Rossi Schneider Takahashi Ueda Varga Weber Yilmaz Zielinski "
          "Abbott Bianchi Castillo Delgado Eklund Ferrante Grant Holm Iqbal Jovanovic Kaur Lindgren Moretti").split()
GIVEN = ("Ana Ben Carla Dev Emil Farid Greta Hiro Ines Jonas Kira Lars Mona Nils Olu Pia Raj Sina Tomas "
         "Una Vik Wren Yuki Zoltan").split()
DEPTS = ["Finance", "Legal", "Research", "Support", "Sales", "Facilities", "Marketing", "Engineering", "HR", "Logistics"]
CSV_ASK = {
    "ext": ["What is {n}'s phone extension?", "Which extension do I dial for {n}?", "How do I reach {n} by phone?",
            "What's the extension of {n}?", "Give me {n}'s desk phone number.", "What number is {n} on?"],
    "dept": ["Which department is {n} in?", "What team does {n} work in?", "Where does {n} sit in the org?",
             "What's {n}'s department?", "Which group is {n} part of?", "In which department does {n} work?"],
    "email": ["What's {n}'s email address?", "How do I email {n}?", "What address do I write to for {n}?",
              "Which email does {n} use?", "Give me the mail address of {n}.", "Where can I email {n}?"],
}


def csv_docs(rng, split, root):
    docs = []
    for _ in range(30):
        rows, qs = [], []
        head = rng.choice(["name,department,extension,email", "Name;Dept;Ext;E-mail", "full_name,team,phone_ext,mail"])
        sep = ";" if ";" in head else ","
        lines = [head]
        names = set()
        for _ in range(rng.randrange(15, 40)):
            n = "%s %s" % (rng.choice(GIVEN), rng.choice(pool(PEOPLE, split)))
            if n in names:
                continue
            names.add(n)
            rec = (n, rng.choice(DEPTS), str(rng.randrange(2000, 8999)),
                   "%s.%s@example.org" % (n.split()[0].lower(), n.split()[1].lower()))
            rows.append(rec)
            lines.append(sep.join(rec))
        body = "\n".join(lines) + "\n"
        for rec in rng.sample(rows, min(3, len(rows))):
            line = sep.join(rec)
            span = _find(body, line)
            field = rng.choice(list(CSV_ASK))
            gold = {"ext": rec[2], "dept": rec[1], "email": rec[3]}[field]
            qt = rng.choice(families(CSV_ASK[field], split, HELD_Q))
            qs.append(_q(qt.format(n=rec[0]), [gold], "fact", span, "csv." + field))
        docs.append(("/srv/share/staff-%d.csv" % rng.randrange(100), body, qs))
    return docs


INI_KEYS = {"database": [("host", lambda r: "db%d.internal" % r.randrange(1, 9)), ("port", lambda r: str(r.randrange(3300, 6500))),
                         ("user", lambda r: r.choice(["app", "svc_web", "reporting", "etl"]))],
            "server": [("listen_port", lambda r: str(r.choice([8080, 8443, 9000, 3000, 5000, 8000]) + r.randrange(0, 9))),
                       ("workers", lambda r: str(r.randrange(2, 33))), ("log_level", lambda r: r.choice(["info", "debug", "warn"]))],
            "cache": [("size_mb", lambda r: str(r.choice([64, 128, 256, 512, 1024]))), ("ttl_seconds", lambda r: str(r.randrange(30, 7200)))],
            "mail": [("smtp_host", lambda r: "smtp%d.example.net" % r.randrange(1, 5)), ("from", lambda r: "noreply@example.net")]}
INI_ASK = {
    ("database", "host"): ["Which host is the database on?", "Where does the app's database run?", "What's the database server's hostname?"],
    ("database", "port"): ["What port does the database use?", "Which port is the database configured on?", "On what port is the DB?"],
    ("database", "user"): ["What user does the app connect to the database as?", "Which database user is configured?", "What's the DB login name?"],
    ("server", "listen_port"): ["What port does the server listen on?", "Which port is the web server configured for?", "On what port does the service accept connections?"],
    ("server", "workers"): ["How many workers does the server run?", "What's the worker count?", "How many worker processes are configured?"],
    ("server", "log_level"): ["What log level is the server set to?", "How verbose is the server's logging?", "Which logging level is configured?"],
    ("cache", "size_mb"): ["How big is the cache in MB?", "What's the cache size?", "How many megabytes does the cache get?"],
    ("cache", "ttl_seconds"): ["How long do cache entries live?", "What's the cache TTL?", "After how many seconds does the cache expire?"],
    ("mail", "smtp_host"): ["Which SMTP host sends the mail?", "What's the outgoing mail server?", "Where does the app send email through?"],
}


def ini_docs(rng, split, root):
    docs = []
    for _ in range(30):
        app = rng.choice(["billing", "inventory", "webshop", "crm", "scheduler", "reports", "gateway"])
        lines, where = ["# %s configuration" % app, ""], {}
        for sec in rng.sample(list(INI_KEYS), rng.randrange(2, 5)):
            lines.append("[%s]" % sec)
            for key, gen in INI_KEYS[sec]:
                where[(sec, key)] = (len(lines), gen(rng))
                lines.append("%s = %s" % (key, where[(sec, key)][1]))
            lines.append("")
        body = "\n".join(lines)
        qs = []
        for sk in rng.sample([k for k in where if k in INI_ASK], min(2, len([k for k in where if k in INI_ASK]))):
            ln, val = where[sk]
            start = sum(len(x) + 1 for x in lines[:ln])
            qt = rng.choice(families(INI_ASK[sk], split, 1))
            q = qt if rng.random() < 0.5 else qt[:-1] + " in the %s config?" % app
            qs.append(_q(q, [val], "fact", (start, start + len(lines[ln])), "ini." + sk[1]))
        docs.append(("/etc/%s/%s.ini" % (app, app), body, qs))
    return docs


# ---- held-out domains --------------------------------------------------------------------------------

CR_ASK = {"Source": ["Where does the upstream source of {p} come from?", "Where can I download the original {p} sources?",
                     "What is the upstream source location for {p}?"],
          "License": ["Under which license is {p} distributed?", "What license covers {p}?", "How is {p} licensed?"],
          "Upstream-Contact": ["Who is the upstream contact for {p}?", "Whom do I contact upstream about {p}?",
                               "Who should I write to about {p} upstream?"]}


def copyright_docs(rng, split, root):
    files = sorted(glob.glob(os.path.join(root, "usr/share/doc/*/copyright")))
    rng.shuffle(files)
    docs = []
    for fn in files[:200]:
        text = _read(fn, limit=12_000)
        if not text or not text.startswith("Format:"):
            continue
        p = fn.split("/")[-2]
        fields = {}
        for key in ("Source", "Upstream-Contact"):
            m = re.search(r"^%s:[ \t]*(\S[^\n]*)$" % key, text, flags=re.M)
            if m and len(m.group(1)) > 4:
                fields[key] = (m.group(1).strip(), m.span())
        m = re.search(r"^Files: \*\n(?:[^\n]*\n)*?License: ([^\n]+)$", text, flags=re.M)
        if m:
            fields["License"] = (m.group(1).strip(), m.span())
        if not fields:
            continue
        key = rng.choice(sorted(fields))
        gold, span = fields[key]
        if key == "Upstream-Contact":
            gold = gold.split("<")[0].strip() or gold
        qt = rng.choice(CR_ASK[key])
        docs.append((fn[len(root.rstrip("/")):], text, [_q(qt.format(p=p), [gold], "fact", span, "copyright." + key)]))
    return docs


PROTO_ASK = ["What is the protocol number of {n}?", "Which number does the {n} protocol have?",
             "What number is assigned to {n} in the protocols table?"]


def protocols_docs(rng, split, root):
    text = _read(os.path.join(root, "etc/protocols"))
    if not text:
        return []
    recs = list(re.finditer(r"^([a-z][\w.-]*)\s+(\d+)\s+(\S+).*$", text, flags=re.M))
    qs = [_q(rng.choice(PROTO_ASK).format(n=m.group(3)), [m.group(2)], "fact", m.span(), "protocols.number")
          for m in rng.sample(recs, min(8, len(recs)))]
    return [("/etc/protocols", text, qs)]


PW_ASK = {"home": ["What's the home directory of user {u}?", "Where is {u}'s home?", "Which directory is home for the {u} account?"],
          "shell": ["What login shell does {u} have?", "Which shell is set for the {u} user?", "What does {u} log in with?"]}


def passwd_docs(rng, split, root):
    text = _read(os.path.join(root, "etc/passwd"))
    if not text:
        return []
    recs = list(re.finditer(r"^([^:\n]+):[^:\n]*:(\d+):(\d+):[^:\n]*:([^:\n]*):([^:\n]*)$", text, flags=re.M))
    qs = []
    homes = [m.group(4) for m in recs]
    for m in rng.sample(recs, min(6, len(recs))):
        if homes.count(m.group(4)) == 1 and rng.random() < 0.5:
            qs.append(_q(rng.choice(PW_ASK["home"]).format(u=m.group(1)), [m.group(4)], "fact", m.span(), "passwd.home"))
        else:
            qs.append(_q(rng.choice(PW_ASK["shell"]).format(u=m.group(1)), [m.group(5)], "fact", m.span(), "passwd.shell"))
    return [("/etc/passwd", text, qs)]


INV_ITEMS = ["hex bolts M6", "safety gloves", "LED bulbs", "copper wire 2mm", "pallet wrap", "cable ties",
             "printer toner", "AA batteries", "duct tape", "hand sanitizer", "USB-C cables", "paint rollers"]
WAREHOUSES = ["Rotterdam", "Leeds", "Lyon", "Graz", "Porto", "Malmo"]


def json_docs(rng, split, root):
    docs = []
    for _ in range(20):
        recs = []
        for _ in range(rng.randrange(8, 20)):
            recs.append(dict(sku="SKU-%05d" % rng.randrange(100000), item=rng.choice(INV_ITEMS),
                             warehouse=rng.choice(WAREHOUSES), qty=rng.randrange(0, 5000)))
        uniq = {}
        for r in recs:
            uniq.setdefault((r["item"], r["warehouse"]), []).append(r)
        body = "[\n" + ",\n".join("  " + json.dumps(r) for r in recs) + "\n]\n"
        qs = []
        for (item, wh), rs in rng.sample(sorted(uniq.items()), min(2, len(uniq))):
            if len(rs) != 1:
                continue
            r = rs[0]
            span = _find(body, json.dumps(r))
            if rng.random() < 0.5:
                qs.append(_q("How many %s are in stock in %s?" % (item, wh), [str(r["qty"])], "fact", span, "json.qty"))
            else:
                qs.append(_q("What's the SKU of the %s kept in %s?" % (item, wh), [r["sku"]], "fact", span, "json.sku"))
        docs.append(("/srv/inventory/stock-%d.json" % rng.randrange(1000), body, qs))
    return docs


TRAIN_DOMAINS = {"dpkg": dpkg_docs, "services": services_docs, "changelog": changelog_docs, "man": man_docs,
                 "csv": csv_docs, "ini": ini_docs}
HELD_DOMAINS = {"copyright": copyright_docs, "protocols": protocols_docs, "passwd": passwd_docs, "json": json_docs}


def gather_docs(rng, split, root="/"):
    doms = TRAIN_DOMAINS if split != "held" else HELD_DOMAINS
    out = []
    for name, fn in doms.items():
        for path, text, qs in fn(rng, split if split != "held" else None, root):
            for q in qs:
                q["domain"] = name
            out.append((path, text, qs))
    return out


HEADERS = [lambda p: "==> %s <==\n" % p, lambda p: "----- %s -----\n" % p, lambda p: "# file: %s\n" % p]

ABSENT_RECORD_ASK = ["What version of {x} is installed?", "Which port does {x} use?", "Who maintains {x}?",
                     "What's {x}'s email address?", "What is the protocol number of {x}?"]
MADE_UP = ["zorblat", "quintessa-daemon", "frobnicator", "libwibble3", "Hilda Vantongeren", "glimmerd",
           "snarkfs", "Oskar Pemberton-Ruiz", "xylofoo", "tessellate-tools"]


def make_archive(rng, split, target_bytes, root="/", docs=None, n_absent=3):
    """-> (text, questions): documents concatenated until target_bytes; questions of the included
    documents with evidence shifted into the archive, plus absent questions (made-up names)."""
    docs = list(docs if docs is not None else gather_docs(rng, split, root))
    rng.shuffle(docs)
    # interleave the domains, so that a short archive holds some of each
    by_dom = {}
    for d in docs:
        by_dom.setdefault(d[2][0]["domain"] if d[2] else "", []).append(d)
    lanes = [v for _, v in sorted(by_dom.items())]
    docs = [lane[i] for i in range(max(map(len, lanes), default=0)) for lane in lanes if i < len(lane)]
    header = rng.choice(HEADERS)
    parts, qs, pos = [], [], 0
    for path, text, dqs in docs:
        if pos >= target_bytes:
            break
        h = header(path)
        parts.append(h + text + ("" if text.endswith("\n") else "\n") + "\n")
        base = pos + len(h.encode())
        for q in dqs:
            q = dict(q)
            q["evidence"] = [(base + len(text[:a].encode()), base + len(text[:b].encode())) for a, b in q["evidence"]]
            q["q"] = synonymize(q["q"], rng, split, protect=tuple(q["golds"]))
            q["q"] = roughen(q["q"], rng, protect=tuple(q["golds"]) + tuple(re.findall(r"\S*\d\S*", q["q"])),
                             p_typo=0.1, p_lower=0.1)
            qs.append(q)
        pos += len(parts[-1].encode())
    text = "".join(parts)
    for _ in range(n_absent):
        x = rng.choice(MADE_UP)
        if x.lower() not in text.lower():
            qs.append(dict(q=rng.choice(ABSENT_RECORD_ASK).format(x=x), golds=[ABSTAIN], kind="absent",
                           fact="absent", evidence=[], domain="absent"))
    return text, qs
