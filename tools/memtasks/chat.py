"""Multi-session chat histories with facts about people in them, and questions about those facts.

A history is a list of sessions, each a date and turns.  Two shapes, as agents meet them:
  "assistant":  a user talks to an assistant; questions come from the user ("what's my dog called?");
  "pair":       two named people talk; questions are about them in the third person
                ("What is Maya's dog called?").
Facts are stated inside ordinary turns, in varied words, among filler turns (small talk, and
help-desk exchanges whose answers are paragraphs of real documentation) and distractor facts
about other people.  Some facts change in a later session (the latest value is the answer;
"before" questions ask for the earlier one); trips add up to lists; when-questions are answered
by the date of the session that told it; absent questions ask about something never said and
must be answered with common.ABSTAIN.

    hist = make_history(rng, split="train", target_bytes=200_000, filler=Filler(...))
    text, spans = render(hist, fmt)           # the memory's bytes and where every fact lies
    qs = questions(hist, spans, rng, split)   # [{q, golds, kind, fact, evidence, ...}]

Split discipline (common.py): fact types, statement and question families, chat formats and
entity values each have a held-out part that only evaluation uses.
"""
import datetime
import re

from common import ABSTAIN, date_forms, families, pool, roughen, synonymize, value_split

# ---- entity pools (values are split by hash: see common.value_split) ----------------------------

FIRST = ("Aaron Abby Adam Adele Adrian Aisha Alan Alice Amara Amir Ana Andre Anika Anton Arjun Ava Beatriz Ben "
         "Bianca Boris Caleb Camila Carlos Carmen Chen Chloe Clara Colin Dana Daniel Dario Deepa Diego Dmitri "
         "Elena Eli Emil Emma Erik Esther Ethan Farah Felix Fiona Gabriel Gemma Grace Hana Hannah Hassan Helen "
         "Hugo Ian Ines Irene Isaac Ivan Jack Jade James Jana Jasper Javier Jin Joel Jonas Julia Kai Kamal "
         "Karen Kate Kenji Kim Lara Leo Liam Lina Lucas Lucia Luis Maya Mei Mia Milan Mira Nadia Naomi Nate "
         "Nico Nina Noah Nora Olga Omar Oscar Paula Pedro Priya Quinn Rafael Rana Rhea Rosa Ruby Sam Sara "
         "Sean Sofia Sven Tara Theo Tom Uma Vera Victor Wei Yara Yusuf Zara Zoe").split()
PET_NAMES = ("Biscuit Pepper Luna Milo Max Bella Charlie Daisy Rocky Coco Simba Nala Oreo Ziggy Mochi Bruno "
             "Pickles Waffles Shadow Ginger Maple Olive Pumpkin Teddy Toby Rosie Juniper Bean Noodle Pixel "
             "Clementine Gizmo Hazel Jasper Kiwi Loki Mango Nugget Peanut Pretzel Sunny Tofu Willow Ziggy "
             "Bandit Cinnamon Domino Fudge Marble Poppy Sprout Truffle Wasabi Yoshi").split()
SPECIES = ["dog", "cat", "rabbit", "parrot", "hamster", "turtle", "goldfish", "guinea pig", "ferret", "gecko"]
CITIES = ("Austin Denver Seattle Portland Boston Chicago Toronto Vancouver Montreal Dublin Edinburgh Lisbon "
          "Porto Madrid Barcelona Valencia Lyon Marseille Munich Berlin Hamburg Vienna Prague Krakow Zurich "
          "Geneva Milan Turin Naples Athens Oslo Bergen Stockholm Helsinki Copenhagen Amsterdam Utrecht "
          "Antwerp Brussels Tallinn Riga Warsaw Budapest Sofia Istanbul Cairo Nairobi Lagos Accra Tokyo Osaka "
          "Kyoto Seoul Busan Taipei Manila Hanoi Bangkok Singapore Jakarta Perth Sydney Melbourne Auckland "
          "Wellington Lima Quito Bogota Santiago Cordoba Havana Phoenix Tucson Omaha Raleigh Savannah Boise "
          "Sacramento Halifax Calgary Glasgow Leeds Bristol Cardiff Galway Bologna Seville Bilbao Graz "
          "Salzburg Ghent Leipzig Dresden Gdansk Tartu Reno").split()
JOBS = ["nurse", "teacher", "software engineer", "accountant", "architect", "pharmacist", "electrician",
        "graphic designer", "dentist", "librarian", "paramedic", "chef", "translator", "data analyst",
        "civil engineer", "veterinarian", "journalist", "plumber", "physiotherapist", "lawyer",
        "marine biologist", "carpenter", "pilot", "social worker", "radiologist", "baker", "economist",
        "photographer", "firefighter", "tax advisor", "urban planner", "geologist", "optician", "florist"]
COMPANIES = ("Northwind Brightline Copperleaf Bluefin Redwood Solara Vantage Meridian Harborview Pinecrest "
             "Stonebridge Lumen Keystone Clearwater Ironclad Silverline Greenfield Oakmont Starling Tidewater "
             "Crestline Foxglove Halcyon Juniper Kestrel Lodestar Marigold Nimbus Orchard Pelican Quarry "
             "Riverside Sable Thornbury Upland Verity Willowbrook Zephyr").split()
COMPANY_SUFFIX = ["Labs", "Health", "Logistics", "Bank", "Studios", "Systems", "Foods", "Insurance", "Media",
                  "Clinic", "Energy", "Robotics"]
FOODS = ["sushi", "lasagna", "pad thai", "tacos", "ramen", "paella", "pho", "falafel", "dumplings", "risotto",
         "curry", "pierogi", "gnocchi", "burritos", "shakshuka", "biryani", "moussaka", "goulash", "ceviche",
         "bibimbap", "pancakes", "carbonara", "enchiladas", "kimchi stew", "fish and chips", "mac and cheese"]
HOBBIES = ["pottery", "rock climbing", "knitting", "salsa dancing", "birdwatching", "woodworking",
           "sourdough baking", "chess", "kayaking", "watercolor painting", "trail running", "origami",
           "beekeeping", "archery", "calligraphy", "scuba diving", "gardening", "photography", "fencing",
           "skateboarding", "yoga", "board games", "fly fishing", "ice skating"]
CAR_MAKES = [("Toyota", ["Corolla", "RAV4", "Prius", "Camry"]), ("Honda", ["Civic", "Accord", "CR-V", "Jazz"]),
             ("Ford", ["Focus", "Fiesta", "Mustang", "Ranger"]), ("Subaru", ["Outback", "Forester", "Impreza"]),
             ("Volkswagen", ["Golf", "Passat", "Polo", "Tiguan"]), ("Mazda", ["Miata", "CX-5", "Mazda3"]),
             ("Kia", ["Soul", "Niro", "Rio"]), ("Volvo", ["XC60", "V60", "S90"]), ("Skoda", ["Octavia", "Fabia"]),
             ("Hyundai", ["Kona", "Tucson", "Ioniq"]), ("Nissan", ["Leaf", "Micra", "Qashqai"])]
COLORS = ["red", "blue", "silver", "black", "white", "green", "grey", "yellow", "orange", "dark blue"]
ALLERGENS = ["peanuts", "shellfish", "penicillin", "cats", "pollen", "dust mites", "latex", "bee stings",
             "eggs", "sesame", "strawberries", "gluten", "soy", "walnuts"]
ITEMS = ["blue sofa", "standing desk", "espresso machine", "road bike", "winter coat", "laptop stand",
         "rice cooker", "air purifier", "yoga mat", "hiking boots", "bookshelf", "desk lamp", "office chair",
         "coffee grinder", "electric kettle", "backpack", "rain jacket", "blender", "mattress", "tent"]
SHOPS = ["the furniture store", "an online shop", "the outdoor store", "the department store", "a local shop"]
COUNTRIES = ["Portugal", "Japan", "Peru", "Iceland", "Morocco", "Vietnam", "Greece", "Canada", "Mexico",
             "Norway", "Kenya", "Chile", "Italy", "Thailand", "Croatia", "Scotland", "Argentina", "Egypt",
             "New Zealand", "Turkey", "India", "Ireland", "Brazil", "Finland", "Georgia", "Jordan"]
BANDS = ["Radiohead", "Fleetwood Mac", "The Cure", "ABBA", "Daft Punk", "Coldplay", "Queen", "Pink Floyd",
         "Arcade Fire", "The Beatles", "Bon Iver", "Nirvana", "Massive Attack", "Tame Impala", "Blondie"]
SCHOOLS = ["Lincoln Elementary", "Maple Grove Primary", "Riverside Academy", "Oak Hill School",
           "St. Mary's Primary", "Westbrook Elementary", "Hillcrest Middle School", "Cedar Park School"]
DOCTOR_SURNAMES = ["Patel", "Okafor", "Lindqvist", "Moreau", "Tanaka", "Reyes", "Novak", "Schmidt", "Haddad",
                   "Kowalski", "Byrne", "Costa", "Nakamura", "Ferreira", "Osei"]
RELATIONS = [("sister", "she"), ("brother", "he"), ("wife", "she"), ("husband", "he"), ("partner", "they"),
             ("best friend", "they"), ("mom", "she"), ("dad", "he"), ("daughter", "she"), ("son", "he"),
             ("cousin", "they"), ("boss", "they"), ("roommate", "they")]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

# ---- person forms for question templates ---------------------------------------------------------
# {my} my / Maya's   {I} I / Maya   {me} me / Maya   {do} do I / does Maya   {am} am I / is Maya
# {have} have I / has Maya   {did} did I / did Maya   {was} was I / was Maya


def person_forms(who):
    if who is None:
        return dict(my="my", I="I", me="me", do="do I", am="am I", have="have I", did="did I", was="was I",
                    Im="I'm", i_have="I have")
    return dict(my=who + "'s", I=who, me=who, do="does " + who, am="is " + who, have="has " + who,
                did="did " + who, was="was " + who, Im=who + " is", i_have=who + " has")


def fill(t, **kw):
    return t.format(**kw)


# ---- fact types ----------------------------------------------------------------------------------
# Each fact type: values(rng, split) -> dict of slots; say: statement families (first person, said
# by the person the fact is about), each a template (or a list of near variants); ask: question
# families (person forms above); answer: the slot that answers; update/before: for facts that
# change.  The last HELD_S statement and HELD_Q question families are held out.

HELD_S, HELD_Q = 2, 2


def _pet(rng, split):
    return dict(species=rng.choice(SPECIES), pet=rng.choice(pool(PET_NAMES, split)))


def _city(rng, split):
    return dict(city=rng.choice(pool(CITIES, split)))


def _job(rng, split):
    return dict(job=rng.choice(pool(JOBS, split)),
                company=rng.choice(pool(COMPANIES, split)) + " " + rng.choice(COMPANY_SUFFIX))


def _rel(rng, split):
    rel, pron = rng.choice(RELATIONS)
    return dict(rel=rel, pron=pron, name=rng.choice(pool(FIRST, split)))


def _car(rng, split):
    make, models = rng.choice(CAR_MAKES)
    return dict(make=make, model=rng.choice(models), color=rng.choice(COLORS))


def _date_value(rng):
    y, m, d = rng.randrange(1960, 2005), rng.randrange(1, 13), rng.randrange(1, 29)
    return dict(bday="%s %d" % (["January", "February", "March", "April", "May", "June", "July", "August",
                                  "September", "October", "November", "December"][m - 1], d), y=y, m=m, d=d)


def _appt(rng, split):
    h = rng.randrange(7, 19)
    mm = rng.choice([0, 15, 30, 45])
    ampm = "%d:%02d %s" % ((h - 1) % 12 + 1, mm, "am" if h < 12 else "pm")
    return dict(kind=rng.choice(["dentist", "eye doctor", "dermatologist", "physio", "vet", "haircut"]),
                time=ampm, day=rng.choice(WEEKDAYS), hh="%02d:%02d" % (h, mm))


def _code(rng, split):
    return dict(thing=rng.choice(["gym locker", "bike lock", "garage door", "storage unit", "office door",
                                  "suitcase lock", "alarm"]),
                code="".join(rng.choice("0123456789") for _ in range(rng.choice([4, 4, 5, 6]))))


FACTS = {
    "pet_name": dict(
        split="train", values=_pet, answer="pet",
        say=["I have a {species} named {pet}.",
             "My {species} {pet} has been keeping me up all night.",
             "We adopted a {species} last month, we called him {pet}.",
             "{pet}, my {species}, knocked over a plant again today.",
             "Did I tell you about my {species}? His name is {pet}.",
             "Just got back from the vet with {pet} - my {species} - all healthy.",
             "Our little {species} {pet} turned three this week."],
        ask=["What is {my} {species}'s name?", "What did {I} name {my} {species}?",
             "What's the name of {my} {species}?", "{my} {species} is called what again?",
             "Remind me what {my} {species} is called.", "How is {my} {species} named?",
             "Which name did {my} {species} get?"]),
    "hometown": dict(
        split="train", values=_city, answer="city",
        say=["I grew up in {city}.", "I was born and raised in {city}.",
             "Back when I was a kid in {city}, we'd go swimming every summer.",
             "My hometown is {city}, so the cold doesn't bother me.",
             "Growing up in {city} taught me to love trams.",
             "{city} is where I spent my whole childhood."],
        ask=["Where did {I} grow up?", "What is {my} hometown?", "Which city {was} raised in?",
             "Where {was} born and raised?", "What city did {I} spend {my} childhood in?",
             "Which town {do} come from originally?"]),
    "moving": dict(
        split="train", values=_city, answer="city", changes=True,
        say=["We're moving to {city} in the spring.", "Big news: I accepted an offer and I'm relocating to {city}.",
             "I'm packing boxes for the move to {city}.", "The plan is to move to {city} next year.",
             "We signed a lease in {city}, moving there soon.", "Looks like my next home will be {city}."],
        update=["Change of plans, we're going to {city} instead.",
                "Actually the move is off - we picked {city} now.",
                "Update: we're not moving where I said, it's {city} after all.",
                "Scratch that earlier plan, I'm relocating to {city} now."],
        ask=["Where {am} moving to?", "Which city {am} relocating to?", "Where {was} planning to move?",
             "What's the city {Im} moving to?", "Where will {I} live after the move?",
             "To which city {am} moving?"],
        before=["Where {was} going to move before the plans changed?",
                "Which city did {I} first plan to move to?",
                "What was the original destination of {my} move?"]),
    "job": dict(
        split="train", values=_job, answer="job",
        say=["I work as a {job} at {company}.", "I've been a {job} for six years now, currently at {company}.",
             "Long shift today - being a {job} is exhausting.", "As a {job}, I see this kind of thing a lot.",
             "My job? I'm a {job}. The company is {company}.", "I finally got hired as a {job} by {company}!"],
        ask=["What {do} do for a living?", "What is {my} job?", "What's {my} profession?",
             "What {do} work as?", "What kind of work {do} do?", "What's {my} occupation?"]),
    "employer": dict(
        split="train", values=_job, answer="company",
        say=["I work as a {job} at {company}.", "I just started a new job at {company}.",
             "My employer, {company}, is sending me to a conference.",
             "Everyone at {company} is stressed about the deadline.",
             "I got hired by {company} last week.", "{company} finally gave me a raise."],
        ask=["Where {do} work?", "Which company {do} work for?", "Who is {my} employer?",
             "What's the name of the company {I} work at?", "Who {do} work for these days?",
             "At which company {am} employed?"]),
    "relative": dict(
        split="train", values=_rel, answer="name",
        say=["My {rel} {name} is visiting this weekend.", "I had lunch with my {rel}, {name}.",
             "{name} - my {rel} - just started a new job.", "My {rel}'s name is {name}.",
             "I'm planning a surprise party for my {rel} {name}.",
             "Talked to {name} today, my {rel}, for like two hours."],
        ask=["What is {my} {rel}'s name?", "What's {my} {rel} called?", "Who is {my} {rel}?",
             "What's the name of {my} {rel}?", "{my} {rel} - what was the name again?",
             "Remind me of {my} {rel}'s name."]),
    "order": dict(
        split="train", values=lambda rng, split: dict(item=rng.choice(ITEMS), shop=rng.choice(SHOPS)),
        answer="item", changes=True,
        say=["I ordered a {item} from {shop}.", "Just placed an order for a {item}.",
             "I finally bought a {item}, it should arrive next week.",
             "Treated myself and ordered a {item} online.", "My order for a {item} went through.",
             "I'm waiting for the {item} I ordered from {shop}."],
        update=["I changed my order to a {item} instead.", "I swapped the order - getting a {item} now.",
                "Cancelled that and ordered a {item} in its place.",
                "Actually I switched my order to a {item}."],
        ask=["What did {I} order?", "What {am} waiting to be delivered now?",
             "What's {my} current order?", "What item did {I} end up ordering?",
             "What {do} have on order at the moment?", "What's on its way to {me} now?"],
        before=["What had {I} ordered before changing it?", "What was {my} original order?",
                "What did {I} order first, before the switch?"]),
    "food": dict(
        split="train", values=lambda rng, split: dict(food=rng.choice(FOODS)), answer="food",
        say=["My favorite food is {food}.", "I could eat {food} every single day.",
             "Nothing beats {food} after a long week.", "If I had to pick one dish forever, it'd be {food}.",
             "I'm craving {food} again, it's my absolute favorite.", "{food} is my comfort food."],
        ask=["What is {my} favorite food?", "What dish {do} love most?", "What's {my} comfort food?",
             "Which food {do} like best?", "What could {I} eat every day?", "What's {my} go-to dish?"]),
    "hobby": dict(
        split="train", values=lambda rng, split: dict(hobby=rng.choice(HOBBIES)), answer="hobby",
        say=["I've taken up {hobby} recently.", "My new hobby is {hobby}.",
             "Spent the whole weekend on {hobby}, loved it.", "I signed up for a {hobby} class.",
             "{hobby} is how I relax these days.", "I've gotten really into {hobby}."],
        ask=["What hobby {have} taken up?", "What's {my} new hobby?", "What {do} do to relax?",
             "Which hobby {am} into lately?", "What activity {am} into these days?",
             "How {do} spend {my} free time lately?"]),
    "car": dict(
        split="train", values=_car, answer="model",
        say=["I drive a {color} {make} {model}.", "My car is a {make} {model}.",
             "Took my {make} {model} in for service today.", "Just bought a used {color} {make} {model}!",
             "The {model} I drive is a {make}, and it's {color}.", "My {make} {model} broke down again."],
        ask=["What car {do} drive?", "What model is {my} car?", "Which car {do} own?",
             "What kind of car {do} have?", "What's {my} car?", "What vehicle {do} drive?"]),
    "allergy": dict(
        split="train", values=lambda rng, split: dict(allergen=rng.choice(ALLERGENS)), answer="allergen",
        say=["I'm allergic to {allergen}.", "Please remember I have an allergy to {allergen}.",
             "Had a reaction again - {allergen}, as usual.", "The doctor confirmed I'm allergic to {allergen}.",
             "I have to avoid {allergen}, I'm allergic.", "{allergen} make me sick, I'm allergic."],
        ask=["What {am} allergic to?", "What allergy {do} have?", "What {do} need to avoid because of an allergy?",
             "What gives {me} an allergic reaction?", "Which allergy {do} have?", "What must {I} stay away from?"]),
    "appointment": dict(
        split="train", values=_appt, answer="time",
        say=["My {kind} appointment is at {time} on {day}.", "I booked the {kind} for {day} at {time}.",
             "Don't let me forget: {kind}, {day}, {time}.", "{day} at {time} I have the {kind}.",
             "The {kind} can see me on {day} at {time}.", "Got a {kind} appointment, {day} {time}."],
        ask=["What time is {my} {kind} appointment?", "When is {my} {kind} appointment?",
             "At what time {do} see the {kind}?", "What time did {I} book the {kind} for?",
             "When {do} have the {kind}?", "What's the time of {my} {kind} visit?"]),
    "code": dict(
        split="train", values=_code, answer="code",
        say=["The code for my {thing} is {code}.", "Note to self: {thing} code {code}.",
             "I set the {thing} combination to {code}.", "{code} opens my {thing}.",
             "My {thing} code is {code}, don't tell anyone.", "Changed the {thing} code, it's {code} now."],
        ask=["What is the code for {my} {thing}?", "What's {my} {thing} code?", "What opens {my} {thing}?",
             "What combination did {I} set for the {thing}?", "Which code is on {my} {thing}?",
             "Remind me of {my} {thing} code."]),
    "birthday": dict(
        split="train", values=lambda rng, split: _date_value(rng), answer="bday",
        say=["My birthday is on {bday}.", "I'm turning another year older on {bday}.",
             "{bday} is my birthday, just so you know.", "My birthday's coming up - {bday}.",
             "I was born on {bday}.", "Plan something nice for {bday}, that's my birthday."],
        ask=["When is {my} birthday?", "What date is {my} birthday?", "When {was} born?",
             "On which day {do} celebrate {my} birthday?", "What's {my} date of birth (day and month)?",
             "When {do} turn a year older?"]),
    # held-out fact types: never in training data
    "band": dict(
        split="held", values=lambda rng, split: dict(band=rng.choice(BANDS)), answer="band",
        say=["My favorite band is {band}.", "I've been listening to {band} nonstop.",
             "Got tickets to see {band} live!", "{band} is the band I love most.",
             "Nobody beats {band} for me.", "Put on some {band}, it's my favorite."],
        ask=["What is {my} favorite band?", "Which band {do} love most?", "Who {do} listen to nonstop?",
             "Which band {am} a fan of?", "What music {do} like best?", "Who is {my} favorite band?"]),
    "doctor": dict(
        split="held", values=lambda rng, split: dict(doc=rng.choice(DOCTOR_SURNAMES)), answer="doc",
        say=["My doctor is Dr. {doc}.", "Dr. {doc} said my blood pressure is fine.",
             "I switched to Dr. {doc} as my GP.", "Saw Dr. {doc} this morning for a check-up.",
             "My family doctor, Dr. {doc}, is retiring soon.", "Dr. {doc} is the one who treats me."],
        ask=["Who is {my} doctor?", "What's {my} doctor's name?", "Which doctor {do} see?",
             "Who is {my} GP?", "Who treats {me}?", "What is the name of {my} physician?"]),
    "school": dict(
        split="held", values=lambda rng, split: dict(school=rng.choice(SCHOOLS),
                                                      kid=rng.choice(pool(FIRST, split))),
        answer="school",
        say=["My kid {kid} goes to {school}.", "{kid} started at {school} this fall.",
             "We enrolled {kid} at {school}.", "Parent evening at {school} tonight for {kid}.",
             "{school} is where my son {kid} studies.", "{kid} loves the teachers at {school}."],
        ask=["Which school does {my} kid go to?", "Where does {my} child study?",
             "What school is {my} kid enrolled at?", "What's the name of {my} kid's school?",
             "Which school did {my} child start at?", "Where does {my} son go to school?"]),
    "plate": dict(
        split="held", values=lambda rng, split: dict(plate="%s%s-%d%d%d" % (
            rng.choice("ABCDEFGHKLMNPRSTVWXYZ"), rng.choice("ABCDEFGHKLMNPRSTVWXYZ"),
            rng.randrange(10), rng.randrange(10), rng.randrange(10))), answer="plate",
        say=["My license plate is {plate}.", "The plate number on my car is {plate}.",
             "Got a parking ticket for {plate}, that's my car.", "{plate} - that's my plate.",
             "My new registration number is {plate}.", "Write down my plate: {plate}."],
        ask=["What is {my} license plate?", "What's {my} plate number?", "What's {my} car's registration?",
             "Which plate does {my} car have?", "What number is on {my} license plate?",
             "What's {my} registration number?"]),
}

# ---- attributes: many more fact types, stated and asked in generic words ------------------------
# (attribute phrase, values). An attribute's split is its phrase's (common.value_split): a quarter
# of them are held out as fact types that training never states or asks.

def _num(lo, hi, fmt="%d"):
    return lambda rng: fmt % rng.randrange(lo, hi)


def _pick(*vals):
    return lambda rng: rng.choice(vals)


def _clock(rng):
    h, m = rng.randrange(5, 24), rng.choice([0, 15, 30, 45])
    return "%d:%02d %s" % ((h - 1) % 12 + 1, m, "am" if h < 12 else "pm")


ATTRS = [
    ("favorite color", _pick(*COLORS, "purple", "teal", "maroon", "navy")),
    ("shoe size", _num(36, 47)),
    ("blood type", _pick("A+", "A-", "B+", "B-", "O+", "O-", "AB+", "AB-")),
    ("star sign", _pick("Aries", "Taurus", "Gemini", "Cancer", "Leo", "Virgo", "Libra", "Scorpio",
                        "Sagittarius", "Capricorn", "Aquarius", "Pisces")),
    ("favorite movie", _pick("Casablanca", "Spirited Away", "The Matrix", "Amelie", "Jaws", "Paddington 2",
                             "Alien", "Up", "Heat", "Arrival", "Rear Window", "Moonlight")),
    ("favorite book", _pick("Dune", "Middlemarch", "The Hobbit", "Beloved", "Persuasion", "Neuromancer",
                            "Rebecca", "Emma", "Ulysses", "Matilda")),
    ("middle name", lambda rng: rng.choice(FIRST)),
    ("nickname", _pick("Sparky", "Bean", "Ace", "Bubbles", "Chief", "Doc", "Scout", "Tiny", "Red", "Sunny")),
    ("gym", _pick("FitLife on Main Street", "Iron Temple", "the YMCA downtown", "Pulse Fitness", "CoreWorks")),
    ("bank", _pick("Harbor Credit Union", "First Meridian Bank", "Lakeside Savings", "Summit Bank")),
    ("phone carrier", _pick("Skyline Mobile", "Beacon Wireless", "Orbit Telecom", "Nova Mobile")),
    ("landlord's name", lambda rng: "%s %s" % (rng.choice(FIRST), rng.choice(DOCTOR_SURNAMES))),
    ("wifi password", lambda rng: rng.choice(["sunflower", "pancake", "marble", "lighthouse", "tiger"]) +
     str(rng.randrange(10, 999))),
    ("favorite sport", _pick("tennis", "basketball", "cricket", "rugby", "volleyball", "badminton", "golf")),
    ("coffee order", _pick("oat milk flat white", "double espresso", "iced americano", "cappuccino with cinnamon",
                           "decaf latte", "cortado")),
    ("preferred airline", _pick("Aurora Air", "Bluebird Airways", "Polar Air", "Coastline Airlines")),
    ("apartment number", lambda rng: "%d%s" % (rng.randrange(1, 40), rng.choice(["", "A", "B", "C"]))),
    ("employee ID", lambda rng: "E-%05d" % rng.randrange(100000)),
    ("favorite season", _pick("spring", "summer", "autumn", "winter")),
    ("dream destination", lambda rng: rng.choice(COUNTRIES)),
    ("favorite dessert", _pick("tiramisu", "cheesecake", "baklava", "creme brulee", "apple pie", "mochi",
                               "panna cotta", "brownies")),
    ("native language", _pick("Portuguese", "Korean", "Dutch", "Polish", "Tagalog", "Swahili", "Greek", "Hindi")),
    ("favorite podcast", _pick("Night Owls", "The Long Way Round", "Data Diaries", "Mind the Map", "Slow Cooked")),
    ("daily step goal", lambda rng: "%d steps" % rng.choice([6000, 8000, 10000, 12000, 15000])),
    ("usual bedtime", _clock),
    ("wake-up time", _clock),
    ("favorite flower", _pick("tulips", "peonies", "sunflowers", "lilies", "orchids", "daisies", "lavender")),
    ("lucky number", _num(1, 100)),
    ("mechanic", lambda rng: "%s at %s Garage" % (rng.choice(FIRST), rng.choice(COMPANIES))),
    ("pharmacy", _pick("the pharmacy on Elm Street", "Greenleaf Pharmacy", "the drugstore by the station")),
    ("library card number", _num(100000, 999999)),
    ("insurance provider", _pick("Safeguard Mutual", "Evergreen Insurance", "Harborline Assurance")),
    ("seat preference", _pick("window seat", "aisle seat", "exit row")),
    ("favorite board game", _pick("Catan", "Ticket to Ride", "Carcassonne", "Scrabble", "Azul", "Codenames")),
    ("favorite holiday", _pick("Thanksgiving", "Halloween", "New Year's Eve", "Diwali", "Midsummer", "Easter")),
    ("yoga teacher", lambda rng: rng.choice(FIRST)),
    ("first concert", lambda rng: rng.choice(BANDS)),
    ("running goal", _pick("a 10k under an hour", "a half marathon", "a full marathon", "5k every morning")),
    ("commute", _pick("by bike", "by train", "on foot", "by bus", "by car", "by ferry")),
    ("favorite tea", _pick("earl grey", "jasmine tea", "rooibos", "chai", "sencha", "mint tea")),
    ("video game of the year", _pick("Hollow Knight", "Stardew Valley", "Celeste", "Hades", "Tetris")),
    ("house number", _num(1, 300)),
    ("locker number", _num(1, 500)),
    ("favorite museum", _pick("the Louvre", "the Prado", "the Rijksmuseum", "MoMA", "the Tate Modern")),
]
ATTR_SAY = ["My {attr} is {v}.", "{v} is my {attr}.", "Oh, and my {attr}? It's {v}.",
            "For the record, my {attr} is {v}.", "Just so you know, my {attr} is {v}.",
            "I should mention that my {attr} is {v}.", "Quick note: {attr} - {v}.",
            "If anyone asks, my {attr} is {v}.",
            # held out
            "Something about me: my {attr} happens to be {v}.", "My {attr}, since you asked, is {v}."]
ATTR_ASK = ["What is {my} {attr}?", "What's {my} {attr} again?", "Do you remember {my} {attr}?",
            "Remind me, what is {my} {attr}?", "Tell me {my} {attr}.", "{my} {attr} - what was it?",
            "I forgot {my} {attr}, what is it?", "Can you tell me {my} {attr}?",
            # held out
            "Any idea what {my} {attr} is?", "Which {attr} did {I} tell you about?"]


def _attr_values(gen, phrase):
    """Values of an attribute are split by hash as well; a small closed set (the seasons) may
    have no value of a split, and then keeps its last draw."""
    def values(rng, split):
        for _ in range(20):
            v = gen(rng)
            if split is None or value_split(v) == split:
                break
        return dict(v=v, attr=phrase)
    return values


for _phrase, _gen in ATTRS:
    FACTS["attr:" + _phrase] = dict(split=value_split(_phrase), values=_attr_values(_gen, _phrase), answer="v",
                                    say=ATTR_SAY, ask=ATTR_ASK, generic=True)

# trips: a list fact and when-questions (the session date answers)
TRIP_SAY = ["I just got back from {country}!", "We spent a week in {country}, it was amazing.",
            "Back from my trip to {country} today.", "Photos from {country} coming soon, what a trip.",
            "My vacation in {country} was exactly what I needed.", "Just returned from visiting {country}."]
TRIP_LIST_ASK = ["Which countries {have} visited?", "Where {have} traveled?", "What countries did {I} go to?",
                 "List the places {I} went on trips.", "Which trips did {I} take?", "Where {have} been on vacation?"]
TRIP_WHEN_ASK = ["When did {I} get back from {country}?", "When did {I} travel to {country}?",
                 "What date did {I} return from {country}?", "When was {my} trip to {country}?",
                 "On what date did {I} come back from {country}?", "When {was} in {country}?"]

# distractors: the same facts about someone else ("my neighbour has a dog named Rex")
OTHER_PEOPLE = ["my neighbour", "my coworker", "a friend of mine", "my cousin's friend", "my old roommate"]
DISTRACT = {
    "pet_name": "By the way, {other} has a {species} named {pet}.",
    "hometown": "{Other} grew up in {city}, funny coincidence.",
    "moving": "{Other} is moving to {city} soon.",
    "job": "{Other} works as a {job}.",
    "employer": "{Other} just joined {company}.",
    "relative": "{Other}'s {rel} is called {name}.",
    "order": "{Other} ordered a {item} too.",
    "food": "{Other} is obsessed with {food}.",
    "hobby": "{Other} got into {hobby}.",
    "car": "{Other} drives a {make} {model}.",
    "allergy": "{Other} is allergic to {allergen}.",
    "appointment": "{Other} has a {kind} appointment at {time}.",
    "code": "{Other}'s {thing} code is {code}, weirdly.",
    "birthday": "{Other}'s birthday is {bday}.",
    "band": "{Other} loves {band}.",
    "doctor": "{Other} sees Dr. {doc}.",
    "school": "{Other}'s kid goes to {school}.",
    "plate": "{Other}'s plate is {plate}.",
}

# absent questions: facts of these kinds are asked about when the history never states them
# (asked in the fact type's own question families)
ABSENT_KINDS = ["pet_name", "relative", "car", "allergy", "code", "appointment", "hobby", "food", "band",
                "doctor", "plate", "moving", "employer", "hometown", "school"]

# ---- filler -------------------------------------------------------------------------------------

SMALL_TALK = [
    ("Good morning! How are you today?", "Good morning! I'm doing well, thanks for asking. What can I help with?"),
    ("Ugh, long day.", "Sorry to hear that. Want to talk about it, or would a distraction help?"),
    ("Can you suggest a quick dinner idea?", "How about a stir-fry with whatever vegetables you have, some rice and a simple soy-ginger sauce?"),
    ("What's a good way to stay focused?", "Try working in 25-minute blocks with short breaks, and keep your phone in another room."),
    ("I can't sleep.", "That's rough. Dimming the lights, no screens for a while and a warm drink can help you wind down."),
    ("Tell me a fun fact.", "Octopuses have three hearts and blue blood."),
    ("It's raining again.", "Perfect weather for a book and a cup of tea, maybe."),
    ("Any tips for a job interview?", "Research the company, prepare two or three stories about your work, and have questions ready for them."),
    ("How do I keep basil alive?", "Lots of light, water when the top of the soil is dry, and pinch off the flowers."),
    ("Recommend a podcast?", "What are you into - history, science, comedy? I can tailor it."),
    ("Thanks for yesterday.", "Anytime! Glad it helped."),
    ("I'm bored.", "Want a puzzle, a recipe to try, or a short walk challenge?"),
    ("How many cups in a liter?", "About four and a quarter US cups."),
    ("What should I read next?", "If you liked something recent, tell me and I'll suggest similar books."),
    ("I'm trying to drink more water.", "Keeping a bottle on your desk and drinking a glass with each meal helps a lot."),
    ("My back hurts from sitting.", "Try standing up every half hour and a few gentle stretches; raise the screen to eye level too."),
    ("What's a good weekend activity?", "A hike, a museum, or trying a new recipe with friends are all good options."),
    ("Is it worth learning to cook?", "Definitely - it saves money and it's a nice skill to have."),
]

ASK_DOC = ["Can you explain what {topic} does?", "What is {topic}?", "How do I use {topic}?",
           "Tell me about {topic}.", "I keep seeing {topic}, what's that about?"]


class Filler:
    """Paragraphs of documentation to use as long assistant answers: (topic, paragraph) pairs."""

    def __init__(self, pairs):
        self.pairs = [p for p in pairs if 200 <= len(p[1]) <= 2000]
        if not self.pairs:
            raise ValueError("filler has no paragraphs of 200-2000 bytes")

    @classmethod
    def from_man_pages(cls, limit=3000, seed=0, root="/"):
        import glob
        import gzip
        import os
        import random as _r
        import sys as _s
        _s.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train"))
        from make_corpus import strip_troff, to_ascii
        files = sorted(glob.glob(os.path.join(root, "usr/share/man/man1/*.gz")))
        _r.Random(seed).shuffle(files)
        pairs, per_prefix = [], {}
        for fn in files:
            if len(pairs) >= limit:
                break
            prefix = re.split(r"[-_.]", os.path.basename(fn))[0]
            per_prefix[prefix] = per_prefix.get(prefix, 0) + 1
            if per_prefix[prefix] > 2:       # gcloud_* alone has thousands of pages
                continue
            try:
                src = gzip.open(fn, "rb").read(200_000).decode("utf-8", "ignore")
            except (OSError, EOFError):
                continue
            text = to_ascii(strip_troff(src))
            topic = os.path.basename(fn).split(".")[0]
            paras = [re.sub(r"\s+", " ", p).strip() for p in text.split("\n\n")]
            paras = [p for p in paras if len(p) > 200 and p.count(" ") > 30]
            for p in paras[:3]:
                pairs.append((topic, p))
        return cls(pairs)


# ---- histories ----------------------------------------------------------------------------------

def _session_dates(rng, n):
    d = datetime.date(rng.randrange(2019, 2025), rng.randrange(1, 13), rng.randrange(1, 28))
    out = []
    for _ in range(n):
        out.append(d)
        d = d + datetime.timedelta(days=rng.randrange(1, 20))
    return out


def make_history(rng, split, target_bytes, filler, shape=None, n_facts=None):
    """A history of sessions; facts (with their sessions and turns) recorded in hist['facts']."""
    shape = shape or rng.choice(["assistant", "pair"])
    speaker = rng.choice(pool(FIRST, split))
    other = rng.choice([n for n in pool(FIRST, split) if n != speaker])
    kinds = [k for k, f in FACTS.items() if split is None or f["split"] == split or
             (split == "held" and f["split"] == "train")]
    # held-out histories mix held-out fact types with train ones (told in held-out families)
    n_sessions = max(3, target_bytes // rng.randrange(6000, 14000))
    dates = _session_dates(rng, n_sessions)
    sessions = [dict(date=d, turns=[]) for d in dates]
    n_facts = n_facts or rng.randrange(6, 12)
    # about half the facts of the hand-written types, half generic attributes
    named = [k for k in kinds if not FACTS[k].get("generic")]
    attrs = [k for k in kinds if FACTS[k].get("generic")]
    n_named = min(len(named), sum(rng.random() < 0.55 for _ in range(n_facts)))
    chosen = rng.sample(named, n_named) + rng.sample(attrs, min(len(attrs), n_facts - n_named))
    facts = []
    for k in chosen:
        f = FACTS[k]
        v = f["values"](rng, split)
        s_idx = rng.randrange(0, max(1, n_sessions - 2))
        fact = dict(kind=k, values=v, session=s_idx, say=rng.choice(families(f["say"], split, HELD_S)))
        if f.get("changes") and rng.random() < 0.6:
            v2 = f["values"](rng, split)
            while v2[f["answer"]] == v[f["answer"]]:
                v2 = f["values"](rng, split)
            for key in v:            # an update changes the answer slot only
                if key != f["answer"]:
                    v2[key] = v[key]
            fact["new_values"] = v2
            fact["new_session"] = rng.randrange(s_idx + 1, n_sessions)
            fact["update"] = rng.choice(families(f["update"], split, 1))
        facts.append(fact)
    trips = []
    for _ in range(rng.randrange(0, 4)):
        c = rng.choice(COUNTRIES)
        if c not in [t["country"] for t in trips]:
            trips.append(dict(country=c, session=rng.randrange(n_sessions),
                              say=rng.choice(families(TRIP_SAY, split, HELD_S))))
    hist = dict(shape=shape, speaker=speaker, other=other, sessions=sessions, facts=facts, trips=trips)
    _lay_out(hist, rng, target_bytes, filler)
    return hist


def _turn_pair(rng, filler):
    if rng.random() < 0.8:
        topic, para = rng.choice(filler.pairs)
        return (rng.choice(ASK_DOC).format(topic=topic), para)
    return rng.choice(SMALL_TALK)


def _lay_out(hist, rng, target_bytes, filler):
    """Distribute fact turns and filler over the sessions until target_bytes is reached."""
    sessions = hist["sessions"]
    ack = ["Got it, I'll remember that.", "Noted!", "Thanks for telling me.", "That's great to hear!",
           "Oh, nice.", "Good to know.", "Sounds good.", "I see."]
    for i, fact in enumerate(hist["facts"]):
        f = FACTS[fact["kind"]]
        sessions[fact["session"]]["turns"].append(dict(user=fill(fact["say"], **fact["values"]),
                                                       reply=rng.choice(ack), fact=(i, "say")))
        if "new_values" in fact:
            sessions[fact["new_session"]]["turns"].append(dict(user=fill(fact["update"], **fact["new_values"]),
                                                               reply=rng.choice(ack), fact=(i, "update")))
        # a distractor: the same kind of fact about someone else, with another value
        if rng.random() < 0.7:
            dv = f["values"](rng, None)
            who = rng.choice(OTHER_PEOPLE)
            line = DISTRACT.get(fact["kind"], "{Other}'s {attr} is {v}.").format(
                other=who, Other=who[0].upper() + who[1:], **dv)
            sessions[rng.randrange(len(sessions))]["turns"].append(dict(user=line, reply=rng.choice(ack)))
    for j, trip in enumerate(hist["trips"]):
        sessions[trip["session"]]["turns"].append(dict(user=trip["say"].format(country=trip["country"]),
                                                       reply=rng.choice(ack), trip=j))
    for s in sessions:
        rng.shuffle(s["turns"])
    size = sum(len(t["user"]) + len(t["reply"]) + 40 for s in sessions for t in s["turns"])
    while size < target_bytes:
        s = rng.choice(sessions)
        u, r = _turn_pair(rng, filler)
        s["turns"].insert(rng.randrange(len(s["turns"]) + 1), dict(user=u, reply=r))
        size += len(u) + len(r) + 40


# ---- rendering -----------------------------------------------------------------------------------
# Chat formats: how the history is written into the memory.  The last HELD_F are held out.
HELD_F = 2


def _fmt_plain(date, a, b):
    return ("Session on %s\n" % date.isoformat(), "%s: " % a, "%s: " % b, "\n", "\n")


def _fmt_brackets(date, a, b):
    return ("=== %s, %s ===\n" % (date.strftime("%A"), written_date(_fmt_brackets, date)), "[%s] " % a, "[%s] " % b, "\n", "\n")


def _fmt_log(date, a, b):
    return ("", "%s %s> " % (date.isoformat(), a.lower()), "%s %s> " % (date.isoformat(), b.lower()), "\n", "")


def _fmt_json(date, a, b):
    return ('{"session_date": "%s", "turns": [\n' % date.isoformat(), '  {"role": "%s", "text": "' % a.lower(),
            '  {"role": "%s", "text": "' % b.lower(), '"},\n', "]}\n")


def _fmt_markdown(date, a, b):
    return ("## Conversation - %s\n\n" % written_date(_fmt_markdown, date), "**%s:** " % a, "**%s:** " % b, "\n\n", "\n")


FORMATS = [_fmt_plain, _fmt_brackets, _fmt_log, _fmt_json, _fmt_markdown]


def written_date(fmt, date):
    """The session date as a format writes it (a when-question's answer copies it)."""
    if fmt is _fmt_brackets:
        return "%s %d, %d" % (date.strftime("%B"), date.day, date.year)
    if fmt is _fmt_markdown:
        return "%d %s %d" % (date.day, date.strftime("%B"), date.year)
    return date.isoformat()


def render(hist, fmt):
    """-> (text, spans): spans[(kind, index)] = (start, end) byte range of that fact's turn;
    spans[("date", kind, index)] the bytes that date it (the session's header, or the line's prefix
    where every line carries the date); spans["written"][session index] the date as written."""
    if hist["shape"] == "assistant":
        a, b = "User", "Assistant"
    else:
        a, b = hist["speaker"], hist["other"]
    parts, spans, pos = [], {"written": []}, 0
    for s in hist["sessions"]:
        head, pa, pb, sep, tail = fmt(s["date"], a, b)
        head_span = (pos, pos + len(head.encode()))
        spans["written"].append(written_date(fmt, s["date"]))
        parts.append(head)
        pos += len(head.encode())
        for t in s["turns"]:
            user = t["user"].replace('"', "'") if fmt is _fmt_json else t["user"]
            reply = t["reply"].replace('"', "'") if fmt is _fmt_json else t["reply"]
            line_a = pa + user + sep
            start = pos + len(pa.encode())
            if "fact" in t or "trip" in t:
                key = t["fact"] if "fact" in t else ("trip", t["trip"])
                spans[key] = (start, start + len(user.encode()))
                spans[("date",) + key] = head_span if head else (pos, start)
            parts.append(line_a)
            pos += len(line_a.encode())
            line_b = pb + reply + sep
            parts.append(line_b)
            pos += len(line_b.encode())
        parts.append(tail)
        pos += len(tail.encode())
    return "".join(parts), spans


# ---- questions -----------------------------------------------------------------------------------

def _forms_for(hist):
    return person_forms(None if hist["shape"] == "assistant" else hist["speaker"])


def _golds(kind, values):
    f = FACTS[kind]
    g = [values[f["answer"]]]
    if kind == "birthday":
        g = date_forms(2000, values["m"], values["d"])[3:5] + [values["bday"]]
    if kind == "appointment":
        g = [values["time"], values["hh"], values["time"].replace(" ", "")]
    if kind == "car":
        g = [values["model"]]
    return g


def questions(hist, spans, rng, split, rough=True):
    """Questions about the history: fact, changed (latest), before, when, list, absent."""
    pf = _forms_for(hist)
    out = []

    def add(q, golds, kind, fact, evidence, protect=()):
        if rough:
            q = synonymize(q, rng, split, protect=tuple(protect) + tuple(golds))
            q = roughen(q, rng, protect=tuple(protect) + tuple(golds))
        out.append(dict(q=q, golds=golds, kind=kind, fact=fact, evidence=evidence))

    for i, fact in enumerate(hist["facts"]):
        f = FACTS[fact["kind"]]
        qt = rng.choice(families(f["ask"], split, HELD_Q))
        if "new_values" in fact:
            add(fill(qt, **pf, **fact["new_values"]), _golds(fact["kind"], fact["new_values"]), "changed",
                fact["kind"], [spans[(i, "update")]])
            bt = rng.choice(families(f["before"], split, 1))
            add(fill(bt, **pf, **fact["values"]), _golds(fact["kind"], fact["values"]), "before",
                fact["kind"], [spans[(i, "say")]])
        else:
            add(fill(qt, **pf, **fact["values"]), _golds(fact["kind"], fact["values"]), "fact",
                fact["kind"], [spans[(i, "say")]])
    trips = hist["trips"]
    if trips:
        t = rng.choice(trips)
        j = trips.index(t)
        d = hist["sessions"][t["session"]]["date"]
        wt = rng.choice(families(TRIP_WHEN_ASK, split, HELD_Q))
        written = spans["written"][t["session"]]
        golds = [written] + [g for g in date_forms(d.year, d.month, d.day) if g != written]
        add(fill(wt, **pf, country=t["country"]), golds, "when", "trip",
            [spans[("trip", j)], spans[("date", "trip", j)]], protect=[t["country"]])
    if len(trips) >= 2:
        lt = rng.choice(families(TRIP_LIST_ASK, split, HELD_Q))
        q = fill(lt, **pf)
        out.append(dict(q=roughen(q, rng) if rough else q, golds=[[t["country"]] for t in trips], kind="list",
                        fact="trip", evidence=[spans[("trip", j)] for j in range(len(trips))]))
    stated = {f["kind"] for f in hist["facts"]}
    absent = [k for k in ABSENT_KINDS + [k for k in FACTS if FACTS[k].get("generic")] if k not in stated and (split is None or FACTS[k]["split"] == split
                                                             or split == "held")]
    for k in rng.sample(absent, min(len(absent), rng.randrange(1, 4))):
        v = FACTS[k]["values"](rng, split)
        qt = rng.choice(families(FACTS[k]["ask"], split, HELD_Q))
        add(fill(qt, **pf, **v), [ABSTAIN], "absent", k, [])
    return out


def pick_format(rng, split):
    return rng.choice(families(FORMATS, split, HELD_F))
