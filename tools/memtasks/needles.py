"""Statements of a number in ordinary words, and questions that ask it back: the long-context
retrieval task (the paper's needle) said in many ways.  The last HELD families of each list are
held out (common.families)."""
SAY = [
    "The {x} code is {v}.", "Note: the {x} uses {v}.", "For the {x} the number is {v}.",
    "We set the {x} to {v} yesterday.", "Reminder - {x}: {v}.", "The number you need for the {x} is {v}.",
    "{v} is the {x} number, keep it safe.", "Jot this down, the {x} is {v}.",
    "The special magic number for the {x} is {v}.", "Our {x} reference is {v}.",
    # held out
    "I wrote down {v} as the reference for the {x}.", "{v} is what you type to unlock the {x}.",
    "The ticket for the {x} has the number {v}.",
]
ASK = [
    "What is the {x} code?", "What number does the {x} use?", "What's the number for the {x}?",
    "What was the {x} set to?", "Which number goes with the {x}?", "What's the {x} number?",
    "Tell me the {x} number.", "What is the special magic number for the {x}?", "What's our {x} reference?",
    "Do you remember the {x} number?",
    # held out
    "What reference did I write down for the {x}?", "What do you type to unlock the {x}?",
    "What number is on the ticket for the {x}?",
]
HELD = 3
THINGS = ["side gate", "staff room", "red locker", "filing cabinet", "back door", "freight lift",
          "garden shed", "meeting room", "print room", "parking garage", "tool chest", "lab freezer",
          "delivery van", "guest wifi", "spare safe", "attic hatch", "cold store", "lecture hall",
          "north gate", "server room", "blue locker", "archive vault", "loading dock", "roof hatch",
          "bike shed", "wine cellar", "boiler room", "music studio", "front desk", "east wing", "chemistry lab",
          "storage room", "green van", "main office", "laundry room", "gym locker", "west entrance", "boat house",
          "gallery", "rooftop terrace", "kitchen pantry", "mail room", "data center", "fire exit", "basement",
          "workshop", "greenhouse", "cash register", "photo lab", "reading room", "car park", "bakery oven",
          "pool house", "tennis court", "server cabinet", "yellow cabinet"]

# One thing with several numbers (multi-value): every number is part of the answer.
SAY_VALUES = ["One of the {x} codes is {v}.", "The {x} also takes {v}.", "Another number for the {x}: {v}.",
              "{v} works for the {x} as well.", "You can also use {v} for the {x}.",
              # held out
              "{v} is yet another {x} code.", "The {x} accepts {v} too."]
ASK_VALUES = ["What are all the {x} codes?", "List every number for the {x}.", "Which numbers work for the {x}?",
              "Give me all the {x} numbers.",
              # held out
              "What numbers does the {x} accept?", "Name every code of the {x}."]
# Chains (variable tracking): a number given to one thing, then passed from thing to thing.
LINK = ["The {y} uses the same code as the {x}.", "Set the {y} to whatever the {x} is.",
        "The {y} shares its number with the {x}.", "Copy the {x} number to the {y}.",
        # held out
        "The {y} has the {x}'s code.", "Whatever opens the {x} opens the {y} too."]
ASK_CHAIN = ["Which things have the code {v}?", "What uses the number {v}?", "List everything whose number is {v}.",
             "Which places share the code {v}?",
             # held out
             "What has {v} as its number?", "Name all the places with number {v}."]
HELD_LISTS = 2


def _number(rng):
    return "%d" % rng.randrange(10 ** (rng.choice([4, 5, 6, 7]) - 1), 10 ** 7)


def joined(items):
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def statements(rng, split, task, k):
    """-> ([sentence], [question dict with 'needles': indices of the sentences it rests on]).

    task "keys": k things with a number each, a question per thing;
    task "values": one thing with k numbers, one question (a list, in document order);
    task "chain": a number passed along k things, plus a distractor chain; one question (a list)."""
    from common import families, pool
    things = pool(THINGS, split)
    if task == "keys":
        xs = rng.sample(things, k)
        sents, qs = [], []
        for i, x in enumerate(xs):
            v = _number(rng)
            sents.append(rng.choice(families(SAY, split, HELD)).format(x=x, v=v))
            qs.append(dict(q=rng.choice(families(ASK, split, HELD)).format(x=x), golds=[v], kind="fact",
                           fact="needle", needles=[i]))
        return sents, qs
    if task == "values":
        x = rng.choice(things)
        vs = [_number(rng) for _ in range(k)]
        sents = [rng.choice(families(SAY_VALUES, split, HELD_LISTS)).format(x=x, v=v) for v in vs]
        q = dict(q=rng.choice(families(ASK_VALUES, split, HELD_LISTS)).format(x=x), golds=[[v] for v in vs],
                 kind="list", fact="multivalue", needles=list(range(k)), answer=joined(vs))
        return sents, [q]
    if task == "chain":
        xs = rng.sample(things, k + 2)
        v, w = _number(rng), _number(rng)
        say = families(SAY, split, HELD)
        link = families(LINK, split, HELD_LISTS)
        sents = [rng.choice(say).format(x=xs[0], v=v)]
        sents += [rng.choice(link).format(x=xs[i], y=xs[i + 1]) for i in range(k - 1)]
        sents += [rng.choice(say).format(x=xs[k], v=w), rng.choice(link).format(x=xs[k], y=xs[k + 1])]
        q = dict(q=rng.choice(families(ASK_CHAIN, split, HELD_LISTS)).format(v=v), golds=[[x] for x in xs[:k]],
                 kind="list", fact="chain", needles=list(range(k)), answer=joined(xs[:k]))
        return sents, [q]
    raise ValueError("unknown task %r" % task)


def haystack(rng, split, paragraphs, nbytes, task="keys", k=1):
    """Paragraphs (str) up to about nbytes with the task's statements at random depths, in order.
    -> (text, questions with evidence byte spans)."""
    sents, qs = statements(rng, split, task, k)
    room = nbytes - sum(len(s) + 2 for s in sents)
    paras, size = [], 0
    while size < room:
        p = rng.choice(paragraphs)[:max(40, room - size)] + "\n\n"
        paras.append(p)
        size += len(p)
    slots = sorted(rng.randrange(len(paras) + 1) for _ in sents)   # chains keep their order
    out, spans, pos, j = [], [], 0, 0
    for i, p in enumerate(paras + [""]):
        while j < len(sents) and slots[j] == i:
            s = sents[j] + "\n\n"
            spans.append((pos, pos + len(sents[j].encode())))
            out.append(s)
            pos += len(s.encode())
            j += 1
        out.append(p)
        pos += len(p.encode())
    for q in qs:
        q["evidence"] = [spans[i] for i in q.pop("needles")]
    return "".join(out), qs
