"""Hand-written templates for the long-chat memory benchmark (bench/longchat_generate.py).

A *fact kind* is something a user says once about themselves (a birthday, a dog's name, the city
they live in) with several surface forms of the statement and two sets of questions: ``direct``
ones may reuse the statement's words, ``para`` (paraphrase) ones are written to share no content
word with it. The generator only pairs a statement with a paraphrase when their stemmed content
words are disjoint, so "My big day is {v}." can be asked as "What's the date of my birthday?".

A template starting with ``!`` is held out: the dev split never uses it, the report split
prefers it, so settings chosen on dev cannot have memorised its surface form. Kinds with
``update`` templates can change over time (moved city, new job, new dog, changed taste); kinds
with ``correct`` templates are stated and corrected a message later ("actually, it's Tuesday,
not Monday").
"""

from __future__ import annotations

# -- value pools (all values of one pool are distinct; a value is used once per split) -------

CITY = ["Brno", "Freiburg", "Porto", "Valencia", "Ghent", "Tampere", "Lyon", "Bergen", "Graz", "Kraków",
        "Bologna", "Utrecht", "Aarhus", "Seville", "Leipzig", "Galway", "Cluj", "Ljubljana", "Tallinn", "Bordeaux",
        "Malmö", "Trieste", "Nantes", "Lucerne", "Salzburg", "Gdańsk", "Coimbra", "Bilbao", "Turku", "Innsbruck",
        "Bruges", "Dresden", "Cork", "Montpellier", "Genoa", "Riga", "Vilnius", "Plovdiv", "Split", "Heidelberg",
        "Toulouse", "Antwerp", "Odense", "Uppsala", "Granada", "Verona", "Lausanne", "Aberdeen", "Halifax",
        "Tromsø", "Maastricht", "Wrocław", "Palermo", "Basel", "Exeter", "Dijon", "Oulu", "Kaunas", "Pula"]
COUNTRY = ["Iceland", "Vietnam", "Peru", "Japan", "Morocco", "New Zealand", "Chile", "Portugal", "Norway", "Kenya",
           "Georgia", "Mexico", "Sri Lanka", "Canada", "Greece", "Jordan", "Argentina", "Scotland", "Tanzania",
           "Mongolia", "Cuba", "Slovenia", "Costa Rica", "Namibia", "Laos", "Albania", "Ecuador", "Oman"]
JOB = ["nurse", "architect", "paramedic", "librarian", "electrician", "pharmacist", "vet", "translator",
       "accountant", "primary school teacher", "bus driver", "carpenter", "physiotherapist", "graphic designer",
       "journalist", "data analyst", "florist", "airline pilot", "firefighter", "lab technician", "pastry chef",
       "software tester", "dental hygienist", "social worker", "surveyor", "radio producer", "tax adviser",
       "museum curator", "plumber", "midwife", "game designer", "sound engineer", "park ranger", "optician",
       "locksmith", "wedding planner", "court stenographer", "tailor", "marine biologist", "copywriter",
       "train conductor", "beekeeper", "yoga instructor", "landscape gardener", "speech therapist", "bookbinder"]
COMPANY = ["Northwind Logistics", "Bluefin Analytics", "Harbor & Pike", "Quillfeather Press", "Lumen Dynamics",
           "Greystone Insurance", "Copperleaf Foods", "Vantor Systems", "Oakridge Clinics", "Mistral Robotics",
           "Sunward Energy", "Pebblebrook Games", "Ironbark Builders", "Kestrel Airlines", "Tidewater Bank",
           "Juniper Health", "Brightpath Schools", "Foxglove Media", "Arcadia Textiles", "Silverline Rail"]
PET = ["Biscuit", "Pepper", "Maple", "Noodle", "Ziggy", "Waffles", "Pickles", "Mochi", "Rusty", "Tofu",
       "Clover", "Pretzel", "Muffin", "Nacho", "Poppy", "Sprout", "Bramble", "Dumpling", "Fudge", "Gizmo", "Hazel",
       "Kiwi", "Licorice", "Marble", "Nugget", "Olive", "Peanut", "Quinoa", "Rascal", "Scout", "Truffle", "Wasabi",
       "Yoshi", "Zorro", "Cinnamon", "Pumpkin", "Taco", "Bagel", "Whiskers"]
PERSON = ["Lena", "Marco", "Priya", "Tomasz", "Ingrid", "Kofi", "Sofia", "Mateo", "Yuki", "Hannah", "Omar",
          "Clara", "Dev", "Elif", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Luca", "Maya", "Nils", "Olga",
          "Pavel", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wanda", "Xavi", "Yara", "Zane", "Amara", "Boris",
          "Carmen", "Dario", "Edith", "Fintan", "Gloria", "Henrik", "Isla", "Jakob", "Karin", "Leon", "Mira",
          "Nadia", "Oscar", "Petra", "Quentin", "Rhea", "Stellan", "Thea", "Ugo", "Viola", "Wim", "Ximena",
          "Yosef", "Zora", "Anouk", "Bastian", "Celine", "Dagny", "Emeric", "Freya", "Gideon", "Hedda", "Ivo",
          "Jorunn", "Kasimir", "Liesel", "Magnus", "Nerea", "Orla", "Piet", "Ronja", "Saskia", "Tobiah", "Ulla"]
SURNAME = ["Okafor", "Lindqvist", "Moreau", "Nakamura", "Petrov", "Castillo", "Brennan", "Haddad", "Kowalczyk",
           "Van Dijk", "Rossi", "Adeyemi", "Fischer", "Quinn", "Santos", "Novak", "Eriksen", "Costa", "Mbeki", "Ivanova"]
FOOD = ["lasagne", "pad thai", "ramen", "paella", "falafel wraps", "mushroom risotto", "fish tacos", "goulash",
        "pierogi", "butter chicken", "moussaka", "bibimbap", "shakshuka", "gnocchi", "pho", "jollof rice",
        "spanakopita", "chili con carne", "dim sum", "tagine", "ceviche", "pumpkin soup", "katsu curry", "pavlova"]
COLOUR = ["teal", "mustard yellow", "forest green", "burgundy", "lavender", "coral", "navy blue", "terracotta",
          "mint green", "charcoal grey", "sky blue", "olive", "magenta", "ochre", "lilac", "crimson"]
BAND = ["Radiohead", "Fleetwood Mac", "ABBA", "Daft Punk", "Arctic Monkeys", "Queen", "Massive Attack",
        "Portishead", "Bon Iver", "Tame Impala", "Björk", "The Cure", "Nina Simone", "Khruangbin", "Fleet Foxes",
        "Sigur Rós", "Talking Heads", "Röyksopp"]
BOOK = ["Dune", "Middlemarch", "The Hobbit", "One Hundred Years of Solitude", "Beloved", "Pride and Prejudice",
        "Moby-Dick", "Jane Eyre", "The Remains of the Day", "Never Let Me Go", "The Left Hand of Darkness",
        "Rebecca", "Stoner", "The Master and Margarita", "Kindred"]
MOVIE = ["Amélie", "Spirited Away", "Casablanca", "The Grand Budapest Hotel", "Alien", "Paddington 2", "Heat",
         "Arrival", "Jaws", "Whiplash", "Parasite", "Rear Window", "Fargo", "Moonlight", "Ratatouille"]
TEAM = ["Celtic", "Ajax", "Boca Juniors", "the Green Bay Packers", "Benfica", "Borussia Dortmund",
        "the Chicago Cubs", "Napoli", "Galatasaray", "the Toronto Raptors", "Sevilla", "Feyenoord", "the All Blacks"]
ALLERGEN = ["peanuts", "shellfish", "penicillin", "pollen", "sesame", "kiwi fruit", "latex", "bee stings",
            "strawberries", "walnuts", "mustard seeds", "dust mites"]
DIET = ["vegetarian", "vegan", "pescatarian", "gluten-free", "low-carb", "dairy-free", "low-sodium", "paleo"]
CAR = ["red Toyota Corolla", "silver Skoda Octavia", "white Fiat 500", "green Mini Cooper", "black Volvo V60",
       "blue Honda Civic", "yellow Renault Clio", "grey Tesla Model 3", "orange VW Beetle", "brown Subaru Outback",
       "maroon Peugeot 208", "beige Kia Niro"]
COMMUTE = ["bike", "tram", "bus", "train", "ferry", "electric scooter", "motorbike", "car pool", "cable car",
           "underground"]
HOBBY = ["pottery", "rock climbing", "birdwatching", "salsa dancing", "woodworking", "knitting", "archery",
         "sourdough baking", "beekeeping", "kayaking", "calligraphy", "origami", "fencing", "paddleboarding",
         "watercolour painting", "bouldering", "ice skating", "embroidery", "fly fishing", "stargazing",
         "candle making", "geocaching", "trail running", "scuba diving", "glassblowing", "orienteering", "judo",
         "mosaic making", "rowing", "bonsai"]
INSTRUMENT = ["cello", "saxophone", "ukulele", "harp", "trumpet", "accordion", "banjo", "clarinet", "drums",
              "violin", "flute", "bass guitar"]
LANGUAGE = ["Portuguese", "Japanese", "Swahili", "Finnish", "Korean", "Greek", "Polish", "Icelandic", "Turkish",
            "Hindi", "Dutch", "Welsh", "Basque", "Vietnamese"]
COFFEE = ["flat white", "oat latte", "double espresso", "cortado", "iced americano", "chai latte", "macchiato",
          "mocha", "matcha latte", "cold brew", "cappuccino with cinnamon", "hazelnut latte"]
SHOE = ["37", "38", "39", "40", "41", "42", "43", "44", "45", "46"]
UNIVERSITY = ["the University of Leeds", "Trinity College Dublin", "ETH Zurich", "McGill", "the University of Bologna",
              "Uppsala University", "KU Leuven", "the University of Otago", "Charles University",
              "the University of Cape Town", "Aalto University", "the University of Edinburgh"]
SUBJECT = ["marine biology", "mechanical engineering", "art history", "philosophy", "economics", "linguistics",
           "chemistry", "urban planning", "nursing science", "law", "computer science", "geology", "astronomy",
           "anthropology"]
FEAR = ["spiders", "heights", "deep water", "clowns", "thunderstorms", "snakes", "needles", "crowds", "the dark",
        "wasps", "lifts", "moths"]
TATTOO = ["compass", "swallow", "anchor", "lotus flower", "wolf", "hummingbird", "mountain range", "koi fish",
          "rose", "lighthouse", "fern", "octopus"]
RESTAURANT = ["Luigi's Trattoria", "The Golden Wok", "Casa Pepe", "Blue Elephant", "Chez Marcel",
              "Sakura Sushi Bar", "The Hungry Fox", "Taj Palace", "El Toro Loco", "Nordic Bistro", "Mezze House",
              "The Pickled Herring"]
FLOOR = ["second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh"]
NICKNAME = ["Sunny", "Bean", "Sparky", "Doc", "Buzz", "Red", "Moose", "Chip", "Pixie", "Ace", "Stretch", "Bubbles"]
DRINK = ["gin and tonic", "a cold lager", "Rioja", "sparkling water with lime", "kombucha", "a negroni",
         "ginger beer", "Earl Grey tea", "hot chocolate", "an Aperol spritz", "cider", "mint tea"]
BEDTIME = ["half past ten", "eleven thirty", "midnight", "9:45 pm", "1 am", "a quarter to eleven", "10 pm sharp",
           "half past twelve"]
CHILD_AGE = ["four", "five", "six", "seven", "nine", "eleven", "twelve", "fourteen", "fifteen", "sixteen"]
# small pools: values repeat across characters (kinds using them are never cross-character probes)
DAY = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
CLOCK = ["6:40 am", "7:15 am", "8:05 am", "9:30 am", "11:50 am", "1:20 pm", "2:45 pm", "4:10 pm", "5:35 pm",
         "7:55 pm", "9:25 pm"]
ROOM = ["214", "305", "412", "518", "627", "731", "809", "1107", "1212", "143"]
GATE = ["B12", "A4", "C27", "D9", "E3", "F18", "A22", "C5"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]

POOLS = {
    "city": CITY, "country": COUNTRY, "job": JOB, "company": COMPANY, "pet": PET, "person": PERSON,
    "surname": SURNAME, "food": FOOD, "colour": COLOUR, "band": BAND, "book": BOOK, "movie": MOVIE, "team": TEAM,
    "allergen": ALLERGEN, "diet": DIET, "car": CAR, "commute": COMMUTE, "hobby": HOBBY, "instrument": INSTRUMENT,
    "language": LANGUAGE, "coffee": COFFEE, "shoe": SHOE, "university": UNIVERSITY, "subject": SUBJECT,
    "fear": FEAR, "tattoo": TATTOO, "restaurant": RESTAURANT, "floor": FLOOR, "nickname": NICKNAME,
    "drink": DRINK, "bedtime": BEDTIME, "child_age": CHILD_AGE, "day": DAY, "clock": CLOCK, "room": ROOM,
    "gate": GATE,
}
SHARED_POOLS = {"day", "clock", "room", "gate", "shoe"}   # too small to keep values unique per split
DATE_POOLS = {"date"}                                       # made by the generator: day + month


def K(name, pool, state, direct, para, update=(), correct=()):
    return {"name": name, "pool": pool, "state": list(state), "direct": list(direct), "para": list(para),
            "update": list(update), "correct": list(correct)}


# -- fact kinds ---------------------------------------------------------------------------------

FACT_KINDS = [
    K("birthday", "date",
      ["My big day is {v}.", "I was born on {v}.", "Mark {v} in your calendar, that's when I blow out the candles.",
       "!Every year on {v} I get a year older.", "!Cake and candles for me on {v}, as always."],
      ["When is my birthday?", "!What is my date of birth?"],
      ["What's the date of my birthday?", "When should you wish me a happy birthday?",
       "!On which date do I turn a year older?", "!When do I celebrate my birthday?"]),
    K("anniversary", "date",
      ["We got married on {v}.", "Our wedding was on {v}.", "!My husband and I tied the knot on {v}."],
      ["When did we get married?", "!When was our wedding?"],
      ["When is our anniversary?", "!Which date do my spouse and I celebrate each year?"]),
    K("hometown", "city",
      ["I grew up in {v}.", "I spent my whole childhood in {v}.", "!My roots are in {v}, that's where I was raised."],
      ["Where did I grow up?", "!Where was I raised?"],
      ["Which town am I originally from?", "Where is my family home, where I was a kid?",
       "!What place do I come from?"]),
    K("current_city", "city",
      ["I live in {v}.", "My flat is in {v}.", "!These days I rent a place in {v}."],
      ["Which city do I live in?", "!Where is my flat?"],
      ["Where is home for me these days?", "Which town am I based in right now?", "!Where do I reside now?"],
      update=["We finally moved to {v} last week!", "Big news: I've relocated to {v}.",
              "!The boxes are unpacked, {v} is my new home."]),
    K("job", "job",
      ["I work as a {v}.", "I'm a {v} by profession.", "!My job? I'm a {v}."],
      ["What is my job?", "!What do I work as?"],
      ["What do I do for a living?", "How do I earn my money?", "!What is my occupation?"],
      update=["I started a new job as a {v} this week!", "Career change: I'm now working as a {v}.",
              "!Guess what, I got hired as a {v}."]),
    K("employer", "company",
      ["I'm employed at {v}.", "I've been at {v} for a few years now.", "!My office is at {v}."],
      ["Where am I employed?", "!Which company do I work at?"],
      ["Which company pays my salary?", "Who is my employer?", "!Which firm signs my paycheck?"],
      update=["I just signed a contract with {v}!", "From Monday I'm joining {v}.",
              "!I handed in my notice; next stop is {v}."]),
    K("dog", "pet",
      ["My dog is called {v}.", "Our golden retriever answers to {v}.", "{v} (that's my dog) chewed my shoes again.",
       "!I adopted a puppy last year and named him {v}."],
      ["What is my dog called?", "!What's my dog's name?"],
      ["What's the name of my pet?", "Who is my furry companion?", "!Which four-legged friend lives with me?"],
      update=["We adopted a new dog, a rescue called {v}!", "Meet the newest family member: our puppy {v}.",
              "!Our new dog is named {v}."]),
    K("cat", "pet",
      ["My cat is named {v}.", "{v}, my tabby, knocked a glass off the table again.",
       "!There's a cat at home called {v}, she rules the house."],
      ["What is my cat called?", "!What's my cat's name?"],
      ["Which feline lives in my flat?", "Who is the kitty in my home?", "!What do I call my pet that purrs?"]),
    K("partner", "person",
      ["My partner's name is {v}.", "I've been dating {v} for three years.", "!{v} and I have been together since uni."],
      ["What is my partner's name?", "!Who am I dating?"],
      ["Who am I in a relationship with?", "Who is my significant other?", "!Who's my boyfriend or girlfriend?"]),
    K("daughter", "person",
      ["My daughter is called {v}.", "My little girl {v} started school this year.", "!{v}, my daughter, loves drawing."],
      ["What is my daughter called?", "!What is my daughter's name?"],
      ["What's the name of my child?", "Who is my kid?", "!What do we call our youngest?"]),
    K("son_age", "child_age",
      ["My son just turned {v}.", "My boy is {v} years old.", "!My son is {v} now, growing so fast."],
      ["How old is my son?", "!What age is my son?"],
      ["What age is my kid now?", "!How many candles were on my child's last cake?"]),
    K("grandma", "person",
      ["My grandma {v} turns ninety this year.", "Granny {v} still bakes every Sunday.",
       "!My grandmother's name is {v}."],
      ["What is my grandma called?", "!What's my grandmother's name?"],
      ["What is my nan's first name?", "Who is my father's mother?", "!Who's the oldest lady in our family?"]),
    K("doctor", "surname",
      ["My GP is Dr. {v}.", "I see Dr. {v} for my check-ups.", "!My family doctor is Dr. {v}."],
      ["Who is my GP?", "!Who's my doctor?"],
      ["Which physician do I visit when I'm ill?", "Who treats me when I feel sick?",
       "!Whom do I consult about my health?"]),
    K("favourite_food", "food",
      ["I could eat {v} every day.", "Nothing beats a big plate of {v}.", "!My favourite dish is {v}."],
      ["What food do I love?", "!What is my favourite dish?"],
      ["What meal do I like most?", "What should you cook for me as a treat?", "!What's my comfort meal?"],
      update=["Lately I'm obsessed with {v}, it's my new favourite.", "These days I'd pick {v} over anything.",
              "!My tastes changed: {v} is now the best thing to eat."]),
    K("colour", "colour",
      ["My favourite colour is {v}.", "I paint everything {v} if I can.", "!I just love the shade {v}."],
      ["What is my favourite colour?", "!Which colour do I love?"],
      ["Which shade do I like best?", "What hue should a present for me be?", "!What tint do I prefer?"],
      update=["I've gone off my old favourite; now it's all about {v}.", "My new favourite colour is {v}.",
              "!These days {v} is the colour I love most."]),
    K("band", "band",
      ["I listen to {v} on repeat.", "{v} is my favourite band.", "!Nobody makes music like {v}."],
      ["What is my favourite band?", "!Which band do I listen to?"],
      ["Which musicians do I like best?", "Whose songs are on my playlist the most?",
       "!Which artist would I queue for tickets to see?"],
      update=["My new musical obsession is {v}.", "I can't stop playing {v} these days.",
              "!Lately I've switched to {v}, they're my favourites now."]),
    K("book", "book",
      ["My all-time favourite novel is {v}.", "I've read {v} five times.", "!{v} is the book that changed my life."],
      ["What is my favourite novel?", "!Which book have I read many times?"],
      ["Which title would I take to a desert island?", "What should you recommend I reread?",
       "!What's my most beloved story?"]),
    K("movie", "movie",
      ["My favourite film is {v}.", "I've watched {v} more times than I can count.", "!{v} is the best movie ever made."],
      ["What is my favourite film?", "!Which movie do I love?"],
      ["What would I put on for a cosy night in front of the screen?", "Which picture do I rewatch the most?",
       "!What's my top cinema pick?"]),
    K("team", "team",
      ["I'm a die-hard {v} supporter.", "I never miss a {v} game.", "!I've followed {v} since I was a kid."],
      ["Which team do I support?", "!Whose games do I never miss?"],
      ["Which club do I cheer for?", "Who do I root for in sports?", "!Whose jersey would I wear?"]),
    K("allergy", "allergen",
      ["I'm allergic to {v}.", "I get an allergic reaction from {v}.", "!I break out in hives from {v}."],
      ["What am I allergic to?", "!What gives me an allergic reaction?"],
      ["What should I avoid so I don't get sick?", "What makes my body react badly?",
       "!Which thing could send me to the hospital?"]),
    K("diet", "diet",
      ["I follow a {v} diet.", "I've been eating {v} for a while now.", "!I keep my meals {v}."],
      ["What diet do I follow?", "!What kind of diet am I on?"],
      ["What eating plan should a chef know about for me?", "What kind of food restrictions do I have?",
       "!Which nutrition style do I stick to?"],
      update=["I've switched and gone {v} since last month.", "New year, new me: I'm {v} now.",
              "!My doctor suggested it, so I'm {v} these days."]),
    K("car", "car",
      ["I drive a {v}.", "My car is a {v}.", "!I'm still driving my old {v}."],
      ["What car do I drive?", "!What is my car?"],
      ["What vehicle do I own?", "What's parked in my garage?", "!Which motor do I get around in?"],
      update=["I just bought a {v}!", "I traded in my old car for a {v}.", "!Picked up my new {v} today."]),
    K("commute", "commute",
      ["I get to the office by {v} every morning.", "I commute by {v}.", "!Every workday I take the {v} in."],
      ["How do I commute?", "!How do I get to the office?"],
      ["How do I travel to my workplace?", "Which way of getting around do I use for work?",
       "!What transport takes me to my job?"],
      update=["I've started going to work by {v} instead.", "New routine: I ride the {v} to work now.",
              "!These days I commute by {v}."]),
    K("hobby", "hobby",
      ["I've taken up {v} on weekends.", "My big passion is {v}.", "!I spend Saturdays doing {v}."],
      ["What is my hobby?", "!What have I taken up on weekends?"],
      ["What do I like doing in my spare time?", "How do I relax when I'm off?", "!What's my favourite pastime?"],
      update=["I've got a new hobby: {v}!", "I signed up for a {v} class, loving it.",
              "!Lately all my free time goes into {v}."]),
    K("instrument", "instrument",
      ["I play the {v}.", "I've had {v} lessons since I was ten.", "!Practising the {v} is how I unwind."],
      ["What instrument do I play?", "!Which instrument did I take lessons in?"],
      ["What do I make music with?", "Which musical thing do I practise?", "!What could I perform on at a concert?"]),
    K("language", "language",
      ["I'm studying {v} on an app.", "I take evening classes in {v}.", "!I'm trying to learn {v}."],
      ["What language am I studying?", "!Which language am I learning?"],
      ["Which foreign tongue am I trying to pick up?", "What am I practising with flashcards every night?",
       "!Which way of speaking am I mastering?"],
      update=["I've switched to learning {v} now.", "I dropped my old course and started {v} classes.",
              "!My new evening course is in {v}."]),
    K("coffee", "coffee",
      ["My usual at the café is a {v}.", "I always order a {v}.", "!Every morning I grab a {v} on the way."],
      ["What is my usual coffee order?", "!What do I always order at the café?"],
      ["What do I drink when I need my caffeine fix?", "What should you get me from the barista?",
       "!What's my morning pick-me-up?"],
      update=["I've switched my usual to a {v}.", "These days it's a {v} for me every time.",
              "!New habit: I order a {v} now."]),
    K("shoe", "shoe",
      ["I wear size {v} shoes.", "My feet are a size {v}.", "!Shoe shopping is easy, I'm a {v}."],
      ["What shoe size do I wear?", "!What size are my shoes?"],
      ["How big are my sneakers?", "Which number should you pick when buying me boots?"]),
    K("university", "university",
      ["I studied at {v}.", "I did my degree at {v}.", "!I graduated from {v}."],
      ["Where did I study?", "!Which university did I attend?"],
      ["Which school did I go to after high school?", "Where did I get my diploma?",
       "!What is my alma mater?"]),
    K("subject", "subject",
      ["My degree is in {v}.", "I studied {v} at uni.", "!I majored in {v}."],
      ["What is my degree in?", "!What did I study?"],
      ["What was my major at college?", "Which field did I specialise in as a student?",
       "!Which academic discipline is my background?"]),
    K("fear", "fear",
      ["I'm terrified of {v}.", "I completely freak out around {v}.", "!My worst phobia is {v}."],
      ["What am I terrified of?", "!What is my phobia?"],
      ["What scares me the most?", "What makes me panic?", "!What am I afraid of?"]),
    K("tattoo", "tattoo",
      ["I have a tattoo of a {v} on my arm.", "I got a {v} inked on my shoulder.", "!My only tattoo is a small {v}."],
      ["What is my tattoo of?", "!What tattoo do I have?"],
      ["What picture is drawn on my skin?", "What did the artist needle into me?", "!What body art do I have?"]),
    K("restaurant", "restaurant",
      ["My go-to place for dinner is {v}.", "We always celebrate at {v}.", "!My favourite restaurant is {v}."],
      ["What is my favourite restaurant?", "!Where do I go for dinner?"],
      ["Where do I like to eat out most?", "Where should you book a table for me?",
       "!Which eatery is my top choice?"],
      update=["We found a new favourite spot: {v}.", "Now we always go to {v} instead.",
              "!These days my go-to dinner place is {v}."]),
    K("floor", "floor",
      ["We live on the {v} floor.", "My flat is on the {v} floor, no lift.", "!Up on the {v} floor, that's us."],
      ["Which floor do I live on?", "!Which floor is my flat on?"],
      ["How high up is my home?", "How many stairs must a visitor climb to reach me?",
       "!At what storey is my apartment?"],
      update=["We moved flats inside the building, now we're on the {v} floor.",
              "New apartment, and it's on the {v} floor.", "!Our new place is on the {v} floor."]),
    K("nickname", "nickname",
      ["My friends call me {v}.", "Everyone at school called me {v}.", "!People know me as {v}."],
      ["What do my friends call me?", "!What do people know me as?"],
      ["What's my nickname?", "What name do my pals use for me?", "!Which pet name do I go by?"]),
    K("drink", "drink",
      ["On a Friday night I order {v}.", "My drink of choice is {v}.", "!At a bar I always ask for {v}."],
      ["What is my drink of choice?", "!What do I order on a Friday night?"],
      ["What should you pour me at a party?", "What do I sip to unwind after work?",
       "!Which beverage do I prefer when I go out?"],
      update=["I've gone off my old usual; it's {v} for me now.", "These days I'd rather have {v}.",
              "!New favourite at the bar: {v}."]),
    K("bedtime", "bedtime",
      ["I usually go to bed at {v}.", "Lights out for me at {v}.", "!I try to sleep by {v}."],
      ["When do I go to bed?", "!When do I try to sleep?"],
      ["When do I turn in for the night?", "At what hour do I call it a day and hit the pillow?",
       "!How late do I stay up?"]),
    K("holiday", "country",
      ["This summer we're going to {v}.", "We booked two weeks in {v} for the holidays.",
       "!Our next vacation is in {v}."],
      ["Where are we going this summer?", "!Where are we going on vacation?"],
      ["Where am I travelling for my time off?", "Which country will I visit on my next trip?",
       "!Where is my family's getaway planned?"]),
    K("neighbour", "person",
      ["My neighbour {v} waters my plants when I'm away.", "{v} next door always takes in my parcels.",
       "!The woman living next door is called {v}."],
      ["What is my neighbour called?", "!Who waters my plants when I'm away?"],
      ["Who lives in the flat beside mine?", "Who is the person next to my home?",
       "!Whom can I ask to feed the fish while I travel?"]),
    # corrections: stated, then corrected a message later (values may repeat across characters)
    K("dentist", "day",
      ["My dentist appointment is on {v}.", "I have to see the dentist on {v}.", "!The dentist booked me in for {v}."],
      ["When is my dentist appointment?", "!Which day do I see the dentist?"],
      ["Which day is my teeth check-up?", "When do I have my dental visit?", "!When is my next trip to get my molars checked?"],
      correct=["Correction: the dentist appointment is on {new}, not {old}.",
               "Sorry, I mixed it up, the dentist is {new}, not {old}.",
               "!Wait, the dentist moved me to {new}, not {old}."]),
    K("flight", "clock",
      ["My flight leaves at {v}.", "The plane departs at {v}.", "!I'm flying out at {v}."],
      ["When does my flight leave?", "!What time does my plane depart?"],
      ["What time is my takeoff?", "When do I need to be in the air?", "!When does my trip by air start?"],
      correct=["Correction: my flight leaves at {new}, not {old}.",
               "Sorry, I misread the ticket, the plane departs at {new}, not {old}.",
               "!The airline changed it: {new}, not {old}."]),
    K("hotel_room", "room",
      ["My hotel room is number {v}.", "They gave me room {v} at the hotel.", "!I'm staying in room {v}."],
      ["What is my hotel room number?", "!Which room am I in at the hotel?"],
      ["Which door is mine where I'm lodging?", "Where can people find me in the place I'm staying?",
       "!What number is on my key card?"],
      correct=["Correction: my hotel room is {new}, not {old}.",
               "Sorry, I misread the key card, the room is {new}, not {old}.",
               "!Reception moved me, so it's room {new}, not {old}."]),
    K("team_meeting", "day",
      ["The team meeting got moved to {v}.", "Our weekly meeting is on {v} now.", "!We meet as a team every {v}."],
      ["When is the team meeting?", "!Which day is our weekly meeting?"],
      ["When do my colleagues and I all get together?", "Which day is the office catch-up?",
       "!When is the weekly sync at work?"],
      correct=["Correction: the meeting is on {new}, not {old}.",
               "Sorry, I checked the calendar, the team meeting is {new}, not {old}.",
               "!My manager says {new}, not {old}, for the meeting."]),
    K("party", "day",
      ["The housewarming party is on {v}.", "We're throwing a party on {v}.", "!Party at our place on {v}!"],
      ["When is the housewarming party?", "!Which day is our party?"],
      ["When are we celebrating the new flat with friends?", "When should guests come over to celebrate?",
       "!When's the get-together at our new home?"],
      correct=["Correction: the party is on {new}, not {old}.",
               "Sorry, I told everyone the wrong day, the housewarming is {new}, not {old}.",
               "!We had to push it: {new}, not {old}, for the party."]),
    K("gate", "gate",
      ["My boarding gate is {v}.", "The screen says my gate is {v}.", "!I board at gate {v}."],
      ["What is my boarding gate?", "!Which gate do I board at?"],
      ["Where at the airport should I wait for my plane?", "Where do I line up to get on the aircraft?"],
      correct=["Correction: my gate is {new}, not {old}.",
               "Sorry, the gate changed, it's {new}, not {old}.",
               "!They announced a change: {new}, not {old}."]),
    K("haircut", "clock",
      ["My haircut is booked for {v}.", "The hairdresser has me down for {v}.", "!I'm getting my hair cut at {v}."],
      ["When is my haircut?", "!What time is my hairdresser appointment?"],
      ["When do I get a trim at the salon?", "At what time should I be at the barber's?"],
      correct=["Correction: the haircut is at {new}, not {old}.",
               "Sorry, the salon moved my appointment to {new}, not {old}.",
               "!I misremembered, my hair appointment is {new}, not {old}."]),
]

# terse corrections that only make sense right after the statement they correct
TERSE_CORRECTIONS = ["Oh wait, I got that wrong: it's {new}, not {old}.", "Sorry, correction: {new}, not {old}!",
                     "Hmm, scratch that, I meant {new}, not {old}.", "!Actually, it's {new} not {old}.",
                     "!Oops, my mistake: {new}, not {old}."]

# -- multi-hop: a relation's name in one message, a fact about that name in another -----------

RELATIONS = ["sister", "brother", "best friend", "boss", "cousin", "flatmate", "uncle", "aunt", "godmother",
             "mentor"]
RELATION_STATE = ["My {rel} is called {name}.", "My {rel}'s name is {name}.", "!{name} is my {rel}, by the way.",
                  "!Have I told you about my {rel} {name}?"]
HOP_FACTS = {  # attribute: (pool, statements about {name}, questions about my {rel})
    "job": ("job", ["{name} just started working as a {v}.", "{name} has been a {v} for years now.",
                    "!{name} finally got that {v} position."],
            ["What does my {rel} do for a living?", "!What is my {rel}'s profession?"]),
    "city": ("city", ["{name} moved to {v} last month.", "{name} lives in {v} now.", "!{name} has settled down in {v}."],
             ["Where does my {rel} live?", "!In which town is my {rel} based?"]),
    "pet": ("pet", ["{name} got a parrot called {v}.", "{name} has a parrot named {v}.",
                    "!{name}'s parrot, {v}, can say hello."],
            ["What is my {rel}'s parrot called?", "!What's the name of my {rel}'s bird?"]),
    "hobby": ("hobby", ["{name} is really into {v} lately.", "{name} spends every weekend on {v}.",
                        "!{name} won a prize for {v}."],
              ["What is my {rel}'s hobby?", "!What does my {rel} do for fun?"]),
}

# -- distractors: other people's facts, from the same pools (hard negatives) -------------------

DISTRACTORS = {
    "city": ["My cousin is thinking about moving to {x}.", "A colleague just got back from a trip to {x}.",
             "Have you ever been to {x}? I hear it's lovely.", "!There's a conference in {x} next spring."],
    "person": ["I ran into an old classmate, {x}, at the supermarket.", "My colleague {x} is leaving the company.",
               "{x} from the book club says hi.", "!A guy called {x} sat next to me on the train."],
    "pet": ["My neighbour's dog {x} barks all night.", "My friend's cat {x} is so fat, haha.",
            "!The bakery has a shop cat called {x}."],
    "job": ["My nephew wants to become a {x} when he grows up.", "There was a talk by a {x} at the library.",
            "!I watched a documentary about a {x}."],
    "food": ["My flatmate made {x} yesterday, it was okay.", "The canteen served {x} again.",
             "!There's a new stall selling {x} near the station."],
    "company": ["{x} is hiring again, apparently.", "I read that {x} had a bad quarter.",
                "!An ad for {x} keeps popping up on my phone."],
    "band": ["A friend got tickets for {x}, not really my thing.", "The radio played {x} all morning.",
             "!Someone was busking {x} songs in the park."],
    "country": ["My boss is going to {x} for a conference.", "I saw a travel show about {x}.",
                "!A colleague is emigrating to {x}."],
    "hobby": ["My colleague keeps talking about {x}.", "There's a {x} club near the station.",
              "!I saw a video about {x} yesterday."],
}

# -- chat about topics: content, but no fact about the user ------------------------------------

TOPICS = ["electric cars", "space telescopes", "the Olympics", "jazz festivals", "board games", "minimalism",
          "climate change", "the stock market", "old horror films", "crossword puzzles", "urban gardening",
          "the history of Rome", "AI art", "sleep science", "cold showers", "the moon landing", "medieval castles",
          "bread prices", "tiny houses", "volcanoes", "meditation apps", "bird migration", "the World Cup",
          "vinyl records", "self-driving buses", "3D printing", "deep sea creatures", "ancient Egypt",
          "remote work", "fast fashion", "the northern lights", "chess tournaments", "street food",
          "recycling rules", "superhero movies", "quantum computers", "mountain huts", "solar panels",
          "true crime podcasts", "the price of concert tickets"]
CHAT_USER = ["I read an article about {t} today.", "What do you think about {t}?",
             "I've been thinking about {t} a lot lately.", "Have you heard the news about {t}?",
             "My whole office was talking about {t} today.", "I watched a documentary on {t} last night.",
             "Do you know much about {t}?", "Honestly, {t} fascinates me.", "!Someone on the bus was ranting about {t}.",
             "!Is it just me or is everyone talking about {t}?"]
CHAT_REPLY = ["Oh, {t} is a fascinating subject! What caught your attention?",
              "I don't know much about {t}, but I'd love to learn.", "People have strong opinions about {t}, don't they?",
              "Oh, {t}! What did you make of it?", "!I find {t} really interesting too."]

# -- fillers: acknowledgements, greetings, small talk, questions without content ----------------

FILLER_USER = {
    "ack": ["ok", "Ok.", "okay", "OK!", "yes", "yeah", "no", "Sure.", "Right.", "Cool", "Nice!", "haha", "lol",
            "Thanks!", "Thank you", "I see.", "Got it.", "Fair enough.", "Exactly!", "True.", "Hmm.", "Wow",
            "Oh.", "Alright", "Sounds good.", "Great!", "!yep", "!mhm", "!Makes sense.", "!Totally."],
    "greeting": ["Hi!", "Hello again", "Good morning!", "Hey there", "Good evening", "Good night!",
                 "See you tomorrow!", "Bye for now", "I'm back!", "brb", "!Morning!", "!Hiya"],
    "small-talk": ["It's so hot today.", "It's raining again.", "I'm a bit tired today.", "Long day.",
                   "I just got home.", "The weekend went by so fast.", "Mondays, huh.", "I slept badly last night.",
                   "I'm so hungry.", "Just chilling.", "Nothing much happening here.", "Busy day today!",
                   "!What a week.", "!Finally Friday."],
    "question": ["And you?", "Do you like this?", "What do you think?", "Why not?", "Really?", "Can you believe it?",
                 "What about you?", "Are you sure?", "How so?", "What happened next?", "How are you?",
                 "What should we talk about?", "Do you remember?", "Guess what?", "You know what I mean?",
                 "Are you still there?", "!Isn't it?", "!Any thoughts?"],
}
FILLER_REPLY = ["That's lovely!", "Tell me more!", "And you?", "Do you like this?", "How are you feeling today?",
                "I'm here for you.", "Haha, you're funny!", "Of course!", "I'd love to hear more.",
                "What would you like to talk about?", "Good morning! How did you sleep?", "That sounds nice.",
                "Really? Why is that?", "I see. What happened next?", "Oh no, I'm sorry to hear that.", "Sure thing!",
                "You're welcome!", "Interesting! What do you think about it?", "!Absolutely.", "!Aw, that's sweet.",
                "!Hmm, good question."]
ACK_FACT = ["Oh, that's lovely to hear!", "Thanks for sharing that with me.", "I'll remember that!", "How exciting!",
            "Good to know!", "Oh really? Tell me more!", "That's wonderful.", "Nice! Do you like it?",
            "Oh, interesting!", "Wow, that's a big deal!", "!Noted!", "!Oh, how nice."]

# English function words: a question may share these with the turn that answers it
STOPWORDS = frozenset("""
a about above after again against all am an and any are aren't as at be because been before being below between
both but by can can't could couldn't did didn't do does doesn't doing don't down during each few for from further
had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself him himself his how how's
i i'd i'll i'm i've if in into is isn't it it's its itself let's me more most mustn't my myself no nor not of off on
once only or other ought our ours ourselves out over own same shan't she she'd she'll she's should shouldn't so some
such than that that's the their theirs them themselves then there there's these they they'd they'll they're they've
this those through to too under until up very was wasn't we we'd we'll we're we've were weren't what what's when
when's where where's which while who who's whom why why's with won't would wouldn't you you'd you'll you're you've
your yours yourself yourselves s t d ll m re ve just now also oh yes ok okay really still every always
""".split())
