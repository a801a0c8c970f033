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
          "bike shed", "wine cellar", "boiler room", "music studio"]
