"""Write the travel-notes data of the chat and mixture quickstarts (seeded: rerunning it
reproduces the files byte for byte). Run from the project root: python data/make_travel_data.py

Every name, place and trip is invented from the word lists below; nothing is real.
"""

import json
import random
from pathlib import Path

NAMES = [
    "Maria",
    "Tomas",
    "Aiko",
    "Ravi",
    "Lena",
    "Omar",
    "Ines",
    "Kofi",
    "Sven",
    "Priya",
    "Hugo",
    "Mei",
    "Farah",
    "Jonas",
    "Elif",
    "Diego",
    "Noor",
    "Anton",
    "Yara",
    "Bruno",
]
CITIES = [
    "Lisbon",
    "Oslo",
    "Kyoto",
    "Nairobi",
    "Lima",
    "Hanoi",
    "Porto",
    "Tallinn",
    "Quito",
    "Dakar",
    "Bergen",
    "Cusco",
    "Valencia",
    "Krakow",
    "Tbilisi",
    "Hobart",
    "Fez",
    "Split",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MODES = ["by plane", "by train", "by car", "by boat", "by bus", "by bicycle"]
NOTES = [
    "{name} went {mode} to {city} on {day} to visit an old friend.",
    "On {day}, {name} travelled {mode} to {city} for a conference.",
    "{name} went {mode} to {city} on {day} and stayed for a week.",
    "After a long week, {name} travelled {mode} to {city} on {day}.",
    "{name} finally went {mode} to {city} on {day}, as planned.",
]
SYSTEM = "You extract facts from travel notes. Answer with the exact words from the note only."
QUESTIONS = [
    ("Which city did they go to?", "city"),
    ("On which day?", "day"),
    ("Who travelled?", "name"),
    ("How did they travel?", "mode"),
]


def trip(rng):
    name, city, day = rng.choice(NAMES), rng.choice(CITIES), rng.choice(DAYS)
    mode = rng.choice(MODES)
    note = rng.choice(NOTES).format(name=name, mode=mode, city=city, day=day)
    return note, {"name": name, "city": city, "day": day, "mode": mode}


def conversation(rng):
    """A system turn (most rows), then 2-3 questions about one note, each answered."""
    note, facts = trip(rng)
    asked = rng.sample(QUESTIONS, rng.choice([2, 3]))
    turns = [{"role": "system", "content": SYSTEM}] if rng.random() < 0.8 else []
    for k, (question, key) in enumerate(asked):
        text = f"Note: {note}\n{question}" if k == 0 else question
        turns += [{"role": "user", "content": text}, {"role": "assistant", "content": facts[key]}]
    return {"messages": turns}


def flat(rng):
    note, facts = trip(rng)
    question, key = rng.choice(QUESTIONS)
    return {"question": question, "note": note, "answer": facts[key]}


def write(path, rows):
    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    Path(path).write_text(lines, encoding="utf-8")


if __name__ == "__main__":
    rng = random.Random(13)
    write("data/travel_chat_train.jsonl", [conversation(rng) for _ in range(240)])
    write("data/travel_chat_heldout.jsonl", [conversation(rng) for _ in range(40)])
    write("data/travel_facts.jsonl", [flat(rng) for _ in range(200)])
