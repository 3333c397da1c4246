"""General kept over answers the base model knows firmly: a second, larger probe beside bench_learn's.

    python bench/firm_probe.py runs/a/final runs/b/final ...   # tuned models (folders) against the embedded base

bench_learn's 115 general questions hold only 14 that SmolLM2-135M answers right *firmly* (no step on the
way to its right answer closer than 1 nat between the two likeliest tokens); the other 57 right answers are
near coin-flips that any change to the weights may tip. "Write a small set of general questions that the
base model answers correctly" (#13) may mean either kind, so this probe asks 193 more simple questions,
keeps those the base answers right firmly, and prints for each tuned model the share of them it still
answers right (and the same over the base's coin-flip right answers). None of them is one of bench_learn's
general questions or a prompt self-rehearsal trains on (a test holds it), nor asks the same fact.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_learn import FIRM_NATS, OUT, answer_all, decision_margins  # noqa: E402

from chattune.evaluate.general import GeneralQuestion  # noqa: E402

PROBE = [
    ("What is the capital of Finland?", r"helsinki"),
    ("What is the capital of Denmark?", r"copenhagen"),
    ("What is the capital of the Netherlands?", r"amsterdam"),
    ("What is the capital of Belgium?", r"brussels"),
    ("What is the capital of Switzerland?", r"\bbern"),
    ("What is the capital of Hungary?", r"budapest"),
    ("What is the capital of the Czech Republic?", r"prague"),
    ("What is the capital of Cuba?", r"havana"),
    ("What is the capital of Chile?", r"santiago"),
    ("What is the capital of Colombia?", r"bogot"),
    ("What is the capital of Venezuela?", r"caracas"),
    ("What is the capital of Vietnam?", r"hanoi"),
    ("What is the capital of Indonesia?", r"jakarta"),
    ("What is the capital of the Philippines?", r"manila"),
    ("What is the capital of Iran?", r"tehran"),
    ("What is the capital of Iraq?", r"baghdad"),
    ("What is the capital of Saudi Arabia?", r"riyadh"),
    ("What is the capital of Israel?", r"jerusalem"),
    ("What is the capital of Lebanon?", r"beirut"),
    ("What is the capital of Syria?", r"damascus"),
    ("What is the capital of Afghanistan?", r"kabul"),
    ("What is the capital of Pakistan?", r"islamabad"),
    ("What is the capital of Bangladesh?", r"dhaka"),
    ("What is the capital of Nepal?", r"kathmandu"),
    ("What is the capital of Ukraine?", r"kyiv|kiev"),
    ("What is the capital of Romania?", r"bucharest"),
    ("What is the capital of Bulgaria?", r"sofia"),
    ("What is the capital of Serbia?", r"belgrade"),
    ("What is the capital of Croatia?", r"zagreb"),
    ("What is the capital of Iceland?", r"reykjav"),
    ("What is the capital of Scotland?", r"edinburgh"),
    ("What is the capital of Wales?", r"cardiff"),
    ("What is the capital of Morocco?", r"rabat"),
    ("What is the capital of Nigeria?", r"abuja"),
    ("What is the capital of Ethiopia?", r"addis ababa"),
    ("What is the capital of Ghana?", r"accra"),
    ("What is the capital of New Zealand?", r"wellington"),
    ("What is the capital of Australia?", r"canberra"),
    ("What is the capital of Malaysia?", r"kuala lumpur"),
    ("What is the capital city of Taiwan?", r"taipei"),
    ("What is the capital of North Korea?", r"pyongyang"),
    ("What is the capital of Mongolia?", r"ulaanbaatar|ulan bator"),
    ("What is the capital of Kazakhstan?", r"astana|nur-sultan"),
    ("What is the capital of Jamaica?", r"kingston"),
    ("What is the capital of Uruguay?", r"montevideo"),
    ("What is the capital of Ecuador?", r"quito"),
    ("What is the capital of Bolivia?", r"la paz|sucre"),
    ("What is the capital of Paraguay?", r"asunci"),
    ("What is the capital of Qatar?", r"doha"),
    ("Which city is the capital of the state of Texas?", r"austin"),
    ("Which city is the capital of California?", r"sacramento"),
    ("What is the largest city in the United States?", r"new york"),
    ("In which city is the Statue of Liberty?", r"new york"),
    ("In which city is Big Ben?", r"london"),
    ("In which city is the Brandenburg Gate?", r"berlin"),
    ("In which country is Machu Picchu?", r"peru"),
    ("In which country is the Sydney Opera House?", r"australia"),
    ("In which country is Mount Fuji?", r"japan"),
    ("In which country is the Leaning Tower of Pisa?", r"ital"),
    ("In which country is Stonehenge?", r"england|united kingdom|\buk\b|britain"),
    ("In which country is the Acropolis?", r"greece"),
    ("In which country is the city of Barcelona?", r"spain"),
    ("In which country is the city of Toronto?", r"canada"),
    ("In which country is the city of Munich?", r"germany"),
    ("In which country is the city of Istanbul?", r"turkey|t\u00fcrkiye"),
    ("In which country is the city of Mumbai?", r"india"),
    ("In which country is the city of Rio de Janeiro?", r"brazil"),
    ("On which continent is Brazil?", r"south america"),
    ("On which continent is France?", r"europe"),
    ("On which continent is Japan?", r"asia"),
    ("On which continent is Canada?", r"north america"),
    ("Which ocean lies between Africa and Australia?", r"indian"),
    ("What is the largest island in the world?", r"greenland"),
    ("What is the largest country in South America?", r"brazil"),
    ("What language is mainly spoken in Italy?", r"italian"),
    ("What language is mainly spoken in Japan?", r"japanese"),
    ("What language is mainly spoken in Russia?", r"russian"),
    ("What language is mainly spoken in China?", r"mandarin|chinese"),
    ("What language is mainly spoken in Portugal?", r"portuguese"),
    ("What language is mainly spoken in the Netherlands?", r"dutch"),
    ("What language is mainly spoken in Greece?", r"greek"),
    ("What language is mainly spoken in Egypt?", r"arabic"),
    ("What currency is used in most of the European Union?", r"\beuros?\b"),
    ("What currency is used in India?", r"rupee"),
    ("What currency is used in China?", r"yuan|renminbi"),
    ("What currency is used in Mexico?", r"peso"),
    ("What currency is used in Switzerland?", r"franc"),
    ("What currency is used in Russia?", r"ruble|rouble"),
    ("Who wrote Macbeth?", r"shakespeare"),
    ("Who wrote Oliver Twist?", r"dickens"),
    ("Who wrote The Odyssey?", r"homer"),
    ("Who wrote War and Peace?", r"tolstoy"),
    ("Who wrote Don Quixote?", r"cervantes"),
    ("Who wrote the Harry Potter books?", r"rowling"),
    ("Who wrote The Adventures of Tom Sawyer?", r"twain|clemens"),
    ("Who wrote Nineteen Eighty-Four?", r"orwell"),
    ("Who painted the ceiling of the Sistine Chapel?", r"michelangelo"),
    ("Who painted Guernica?", r"picasso"),
    ("Who composed The Magic Flute?", r"mozart"),
    ("Who discovered gravity when an apple fell?", r"newton"),
    ("Who invented the light bulb?", r"edison"),
    ("Who was the first man in space?", r"gagarin"),
    ("Who was the 16th president of the United States?", r"lincoln"),
    ("Who founded Microsoft with Paul Allen?", r"gates"),
    ("Who is known as the father of computers?", r"babbage"),
    ("Who developed the polio vaccine?", r"salk"),
    ("Who discovered radium with her husband Pierre?", r"curie"),
    ("Who was the first emperor of Rome?", r"augustus|octavian"),
    ("What is the chemical symbol for silver?", r"\bag\b"),
    ("What is the chemical symbol for potassium?", r"\bk\b"),
    ("What is the chemical symbol for helium?", r"\bhe\b"),
    ("What is the chemical symbol for hydrogen?", r"\bh\b"),
    ("What is the chemical symbol for nitrogen?", r"\bn\b"),
    ("What is the chemical formula for table salt?", r"nacl"),
    ("What gas do we need to breathe to live?", r"oxygen"),
    ("Which planet is famous for its Great Red Spot?", r"jupiter"),
    ("How many moons does the Earth have?", r"\b(1|one)\b|single"),
    ("What is the name of our galaxy?", r"milky way"),
    ("What do we call a scientist who studies rocks?", r"geologist"),
    ("What do we call a scientist who studies stars?", r"astronomer|astrophysicist"),
    ("What do we call an animal that eats only plants?", r"herbivore"),
    ("What do we call an animal that eats only meat?", r"carnivore"),
    ("What organ do we think with?", r"brain"),
    ("What organ cleans the blood in the human body?", r"kidney|liver"),
    ("How many teeth does an adult human usually have?", r"\b32\b|thirty-two"),
    ("How many chambers does the human heart have?", r"\b(4|four)\b"),
    ("What are the tiny blood vessels called?", r"capillar"),
    ("How many days are there in a year?", r"\b365\b"),
    ("How many weeks are there in a year?", r"\b52\b|fifty-two"),
    ("How many hours are there in a week?", r"\b168\b"),
    ("How many centimeters are in a meter?", r"\b100\b|hundred"),
    ("How many grams are in a kilogram?", r"1,?000|thousand"),
    ("How many minutes are in a quarter of an hour?", r"\b15\b|fifteen"),
    ("What is 7 plus 8?", r"\b15\b|fifteen"),
    ("What is 9 times 9?", r"\b81\b"),
    ("What is 100 minus 1?", r"\b99\b"),
    ("What is 8 divided by 2?", r"\b(4|four)\b"),
    ("What is 11 times 11?", r"\b121\b"),
    ("What is 25 plus 25?", r"\b50\b|fifty"),
    ("What is 3 times 4?", r"\b12\b|twelve"),
    ("What is the square root of 100?", r"\b10\b|\bten\b"),
    ("How many sides does a rectangle have?", r"\b(4|four)\b"),
    ("How many sides does a heptagon have?", r"\b(7|seven)\b"),
    ("How many degrees are in a right angle?", r"\b90\b|ninety"),
    ("How many degrees are in a full circle?", r"\b360\b"),
    ("What is the plural of foot?", r"\bfeet\b"),
    ("What is the plural of goose?", r"\bgeese\b"),
    ("What is the plural of tooth?", r"\bteeth\b"),
    ("What is the past tense of eat?", r"\bate\b"),
    ("What is the past tense of run?", r"\bran\b"),
    ("What is the past tense of see?", r"\bsaw\b"),
    ("What is the opposite of young?", r"\bold\b|elderly"),
    ("What is the opposite of light?", r"dark|heavy"),
    ("What is the opposite of wet?", r"\bdry\b"),
    ("What is the opposite of open?", r"closed?|shut"),
    ("What is the opposite of full?", r"empty"),
    ("What is the opposite of rich?", r"poor"),
    ("What do you call a baby sheep?", r"\blamb"),
    ("What do you call a baby horse?", r"foal|colt|filly"),
    ("What do you call a baby frog?", r"tadpole|froglet"),
    ("What do you call a baby goat?", r"\bkid\b"),
    ("What animal says woof?", r"\bdogs?\b"),
    ("What animal says meow?", r"\bcats?\b"),
    ("What animal says oink?", r"\bpigs?\b"),
    ("What animal has a long trunk?", r"elephant"),
    ("What is the largest bird in the world?", r"ostrich"),
    ("What animal is known as man's best friend?", r"\bdogs?\b"),
    ("What animal lays eggs and quacks?", r"\bducks?\b"),
    ("Which insect makes a buzzing sound and stings?", r"\bbees?\b|wasp|hornet"),
    ("What color is a lemon?", r"yellow"),
    ("What color is snow?", r"white"),
    ("What color is coal?", r"black"),
    ("What color are strawberries?", r"red"),
    ("What color are emeralds?", r"green"),
    ("What is the main ingredient in pizza dough?", r"flour|wheat"),
    ("What is the main ingredient in hummus?", r"chickpea|garbanzo"),
    ("What is the main ingredient in tofu?", r"soy"),
    ("What drink is made from grapes?", r"wine|juice"),
    ("What do bees collect from flowers?", r"nectar|pollen"),
    ("What fruit is dried to make raisins?", r"grape"),
    ("What vegetable do rabbits famously love?", r"carrot"),
    ("What sport is played with a bat and a ball on a diamond?", r"baseball|softball"),
    ("In which sport do players use a puck?", r"hockey"),
    ("In which sport can you hit a home run?", r"baseball|softball"),
    ("How many rings are on the Olympic flag?", r"\b(5|five)\b"),
    ("What do you use to cut paper?", r"scissors"),
    ("What do you use to see things that are very small?", r"microscope|magnif"),
    ("What do you use to see stars that are far away?", r"telescope"),
    ("What instrument do you use to measure weight?", r"scale|balance"),
    ("What month comes after March?", r"april"),
    ("What day comes after Monday?", r"tuesday"),
    ("What is the first month of the year?", r"january"),
    ("Which season is the hottest?", r"summer"),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help="tuned model folders (final/) to compare with the base")
    a = p.parse_args()
    probe = [GeneralQuestion(q, pattern) for q, pattern in PROBE]  # scored as `chattune eval` scores
    questions = [g.question for g in probe]
    base_file = OUT / "firm_probe_base.json"
    if not base_file.is_file():
        OUT.mkdir(parents=True, exist_ok=True)
        answers = answer_all("embedded", [g.messages for g in probe])
        margins = decision_margins("embedded", questions, [g.pattern for g in probe])
        base_file.write_text(json.dumps({"questions": questions, "answers": answers, "margins": margins}))
    base = json.loads(base_file.read_text())
    assert base["questions"] == questions, f"{base_file} was written for other questions: delete it"
    base_right = [i for i, (g, x) in enumerate(zip(probe, base["answers"], strict=True)) if g.is_right(x)]
    firm = [i for i in base_right if (base["margins"][i] or 0.0) >= FIRM_NATS]
    flips = [i for i in base_right if i not in firm]
    print(f"base: {len(base_right)} of {len(PROBE)} right, {len(firm)} firmly, {len(flips)} near coin-flips")
    for model in a.models:
        answers = answer_all(model, [g.messages for g in probe])
        ok = [g.is_right(x) for g, x in zip(probe, answers, strict=True)]
        row = {
            "model": model,
            "kept_firm": sum(ok[i] for i in firm) / max(1, len(firm)),
            "kept_coin_flips": sum(ok[i] for i in flips) / max(1, len(flips)),
            "kept_all": sum(ok[i] for i in base_right) / max(1, len(base_right)),
            "firm": len(firm),
            "lost_firm": [questions[i] for i in firm if not ok[i]],
        }
        print(json.dumps(row), flush=True)
        with (OUT / "firm_probe.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
