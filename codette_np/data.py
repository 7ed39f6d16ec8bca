"""The built-in "mixed training" dataset, user data loading and the split.

Four categories (default mix 30/25/25/20):
- perspectives: a question answered in the style of one named perspective
  (Newton, Da Vinci, Quantum, Philosophical, Systems, Empathic);
- tools: request -> assistant turn that is exactly a tool call -> tool turn
  with the true result (codette_np.tools runs the call offline) -> answer;
- consciousness: honest, consistent answers about what Codette is;
- mixed: one problem seen from two or three perspectives and integrated,
  some after a tool call.

Every example starts with the system turn (chat.SYSTEM_PROMPT) and is
rendered with chat.render. Generation is procedural (pools x structures x
computed values) and deterministic per seed: each category draws from its
own random.Random(f"{seed}:{category}"), so a category's examples do not
depend on how many examples the other categories get.

An example is a dict: category, text, messages; tool examples (and mixed
examples with a call) also have tool (the expected tool name) and, for the
file tools, files (the workspace as it was before the call).

Command line: python -m codette_np.data --samples 5000 --out data.jsonl --stats
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlsplit

from codette_np import chat, tools

CATEGORIES = ("perspectives", "tools", "consciousness", "mixed")
DEFAULT_MIX = {"perspectives": 0.30, "tools": 0.25, "consciousness": 0.25, "mixed": 0.20}


class DataError(ValueError):
    """Bad user data or bad data options."""


# ---------------------------------------------------------------------------
# small helpers


def _fmt(x: float, nd: int = 2) -> str:
    """A number rounded to `nd` decimals, without trailing zeros."""
    r = round(float(x), nd)
    if r == int(r):
        return str(int(r))
    return f"{r:.{nd}f}".rstrip("0").rstrip(".")


def _and(items: list[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _pct(p: float) -> str:
    return _fmt(100 * p, 1) + "%"


def _example(category: str, turns: list[tuple[str, str]], tool: str | None = None,
             files: dict | None = None) -> dict:
    messages = [{"role": "system", "content": chat.SYSTEM_PROMPT}]
    messages += [{"role": r, "content": c} for r, c in turns]
    ex = {"category": category, "text": chat.render(messages), "messages": messages}
    if tool is not None:
        ex["tool"] = tool
    if files is not None:
        ex["files"] = files
    return ex


# ---------------------------------------------------------------------------
# perspectives

PERSPECTIVES = ("Newton", "Da Vinci", "Quantum", "Philosophical", "Systems", "Empathic")
PERSONA = {
    "Newton": "Newton", "Da Vinci": "Leonardo da Vinci", "Quantum": "a quantum physicist",
    "Philosophical": "a philosopher", "Systems": "a systems thinker",
    "Empathic": "someone who starts from people's feelings",
}

ASK_FORMS = (
    "From the {label} perspective: {q}",
    "Answer with {label} reasoning, please. {q}",
    "{q} Use the {label} perspective.",
    "Think about this the way {persona} would: {q}",
    "{q} How would {persona} see it?",
    "I'd like a {label}-style answer. {q}",
    "Take the {label} view. {q}",
    "{q}",
)

OPENINGS = {
    "Newton": (
        "Newton's perspective: find the causes, measure them, and compute.",
        "Taking the Newton perspective, I will reason from cause to effect with numbers.",
        "Newtonian reasoning: state what is known, apply a law, check the result.",
        "Through Newton's lens this is a question of causes and quantities.",
        "Let me approach this analytically, the way Newton would.",
    ),
    "Da Vinci": (
        "Da Vinci's perspective: observe nature closely, then borrow its solutions.",
        "Thinking like Leonardo, I will look for an analogy before I look for an answer.",
        "The Da Vinci view mixes art and engineering: observe, sketch, connect.",
        "Leonardo would start with curiosity and a notebook, so let me do the same.",
        "Creative, analogical reasoning in the spirit of Da Vinci:",
    ),
    "Quantum": (
        "Quantum perspective: keep several outcomes open and weigh each one.",
        "Thinking probabilistically, the honest answer is a distribution, not a single outcome.",
        "The Quantum view starts from uncertainty and measures it.",
        "Let me reason the way a quantum physicist treats a system: in probabilities.",
        "Through a quantum lens, certainty is rare, so I will put numbers on the doubt.",
    ),
    "Philosophical": (
        "Philosophical perspective: before asking what works, ask what is right.",
        "Ethically, this question has more than one honest answer, so let me weigh them.",
        "A philosopher would slow down and examine the values at stake.",
        "Let me take the ethical view and test the question against a few frameworks.",
        "The Philosophical lens asks who is affected and what we owe them.",
    ),
    "Systems": (
        "Systems perspective: look at the loops, not just the parts.",
        "Thinking in systems, the behaviour comes from how the pieces feed back on each other.",
        "A systems thinker would map the feedback before proposing a fix.",
        "Let me trace the connections, delays and feedback loops here.",
        "Through a systems lens, cause and effect run in circles.",
    ),
    "Empathic": (
        "Empathic perspective: start with how the people involved might feel.",
        "Putting people first, the most useful step is to understand before advising.",
        "The Empathic view looks at feelings and needs before solutions.",
        "Let me think about the human side of this first.",
        "Reasoning with empathy means listening for what is not being said.",
    ),
}

CLOSINGS = {
    "Newton": (
        "In short: identify the cause, quantify it, and the effect follows.",
        "Measure, apply the law, check the units: that is the whole method.",
        "Numbers like these are only as good as the assumptions behind them, so state them.",
        "",
    ),
    "Da Vinci": (
        "Keep a notebook of what you observe; the next idea is usually hiding in it.",
        "The best designs often come from looking somewhere unexpected.",
        "Sketch first, judge later.",
        "",
    ),
    "Quantum": (
        "Until you observe more, hold the possibilities with the weights they deserve.",
        "Uncertainty is not a failure of reasoning; ignoring it is.",
        "New evidence should move these numbers, so keep watching.",
        "",
    ),
    "Philosophical": (
        "Reasonable people can weigh these values differently, and that is worth saying aloud.",
        "Whatever you decide, be ready to explain it to the people it affects.",
        "The right answer is the one you could defend openly.",
        "",
    ),
    "Systems": (
        "Change the structure and the behaviour changes with it.",
        "Watch for delays: the effect of a change often shows up late.",
        "Fixing one part in isolation rarely fixes the whole.",
        "",
    ),
    "Empathic": (
        "Most of the time, people need to feel heard before they want advice.",
        "Kindness and honesty can go together.",
        "Check in again later; care is a process, not a single act.",
        "",
    ),
}

# --- Newton: quantitative problems and causal questions

OBJECTS = ("cart", "sled", "wooden crate", "shopping trolley", "canoe", "small robot", "wagon",
           "bicycle", "toy car", "delivery drone")


def _newton_force(r):
    m, a = r.randint(2, 80), r.choice((0.5, 1.5, 2, 2.5, 3, 4, 1.2, 0.8))
    obj = r.choice(OBJECTS)
    q = r.choice((f"A {obj} of mass {m} kg speeds up at {_fmt(a)} m/s². What net force acts on it?",
                  f"What force does it take to accelerate a {m} kg {obj} at {_fmt(a)} m/s²?",
                  f"How hard must I push a {m} kg {obj} to give it an acceleration of {_fmt(a)} m/s²?"))
    return dict(q=q, known=f"mass m = {m} kg, acceleration a = {_fmt(a)} m/s²",
                law="Newton's second law, F = m × a: the net force equals mass times acceleration",
                calc=f"F = {m} × {_fmt(a)} = {_fmt(m * a)} N",
                result=f"a net force of {_fmt(m * a)} newtons",
                why=r.choice(("Double the mass and the same force gives half the acceleration.",
                              "Friction would add to the force needed, since it is the net force that counts.")))


def _newton_speed(r):
    d, t = r.randint(12, 480), r.choice((0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 6))
    v = d / t
    who = r.choice(("a train", "a cyclist", "a car", "a ferry", "a runner", "a bus"))
    q = r.choice((f"If {who} covers {d} km in {_fmt(t)} hours, what is its average speed?",
                  f"What is the average speed of {who} that travels {d} km in {_fmt(t)} h?"))
    return dict(q=q, known=f"distance d = {d} km, time t = {_fmt(t)} h",
                law="the definition of average speed, v = d / t",
                calc=f"v = {d} / {_fmt(t)} = {_fmt(v)} km/h, which is {_fmt(v / 3.6)} m/s",
                result=f"an average speed of {_fmt(v)} km/h",
                why=r.choice(("The actual speed varied along the way; the average hides that.",
                              "Halving the time at the same distance would double the average speed.")))


def _newton_energy(r):
    m, v = r.randint(1, 1500), r.randint(2, 30)
    e = 0.5 * m * v * v
    q = r.choice((f"How much kinetic energy does a {m} kg object moving at {v} m/s carry?",
                  f"An object of {m} kg moves at {v} m/s. What is its kinetic energy?"))
    return dict(q=q, known=f"mass m = {m} kg, speed v = {v} m/s",
                law="the kinetic energy formula, E = ½ m v²",
                calc=f"E = 0.5 × {m} × {v}² = {_fmt(e)} J",
                result=f"{_fmt(e)} joules of kinetic energy",
                why=r.choice(("Because speed is squared, doubling the speed quadruples the energy.",
                              "That energy must be removed by the brakes to stop it, which is why speed matters so much.")))


def _newton_fall(r):
    h = r.choice((1.25, 2, 5, 10, 20, 45, 80, 3.2, 7.2, 12))
    g = 9.81
    t = math.sqrt(2 * h / g)
    q = r.choice((f"If I drop a stone from {_fmt(h)} m, how long until it hits the ground?",
                  f"How long does a ball take to fall {_fmt(h)} metres, ignoring air resistance?"))
    return dict(q=q, known=f"height h = {_fmt(h)} m, g = 9.81 m/s², starting from rest, no air resistance",
                law="the free-fall relation h = ½ g t², which gives t = √(2h / g)",
                calc=f"t = √(2 × {_fmt(h)} / 9.81) = {_fmt(t)} s, and it lands at about {_fmt(g * t, 1)} m/s",
                result=f"about {_fmt(t)} seconds",
                why=r.choice(("The mass does not appear in the formula: without air, heavy and light objects fall together.",
                              "Air resistance would make a light, wide object take longer.")))


def _newton_work(r):
    f, d, t = r.randint(10, 400), r.randint(2, 50), r.randint(4, 60)
    w = f * d
    q = r.choice((f"A worker pushes a crate with {f} N over {d} m in {t} s. How much work is done, and at what power?",
                  f"What work and average power result from a {f} N force moving something {d} m in {t} seconds?"))
    return dict(q=q, known=f"force F = {f} N, distance d = {d} m, time t = {t} s",
                law="the definitions of work, W = F × d, and power, P = W / t",
                calc=f"W = {f} × {d} = {w} J, and P = {w} / {t} = {_fmt(w / t)} W",
                result=f"{w} joules of work at {_fmt(w / t)} watts",
                why=r.choice(("Doing the same work faster needs more power, not more energy.",
                              "Only the part of the force along the motion does work; here they point the same way.")))


def _newton_density(r):
    mass, vol = r.randint(20, 900), r.randint(25, 600)
    rho = mass / vol
    item = r.choice(("block", "toy figure", "sample of wood", "piece of plastic", "stone", "candle"))
    floats = "floats" if rho < 1 else "sinks"
    q = r.choice((f"A {item} has a mass of {mass} g and a volume of {vol} cm³. Will it float in water?",
                  f"Does a {item} with mass {mass} g and volume {vol} cm³ sink or float in water?"))
    return dict(q=q, known=f"mass {mass} g, volume {vol} cm³, water is about 1.00 g/cm³",
                law="the floating rule: an object floats when its density, mass / volume, is below the liquid's",
                calc=f"density = {mass} / {vol} = {_fmt(rho)} g/cm³",
                result=f"a density of {_fmt(rho)} g/cm³, so it {floats}",
                why=r.choice(("Buoyancy equals the weight of the water pushed aside; density decides which wins.",
                              "Shape matters too: a steel ship floats because its hull encloses a lot of air.")))


def _newton_ohm(r):
    v, res = r.choice((1.5, 3, 5, 9, 12, 24, 230)), r.choice((2, 4, 10, 22, 47, 100, 220, 1000))
    i = v / res
    q = r.choice((f"What current flows through a {res} Ω resistor connected to {_fmt(v)} V?",
                  f"A {_fmt(v)} V source drives a {res} ohm resistor. How much current and power?"))
    return dict(q=q, known=f"voltage V = {_fmt(v)} V, resistance R = {res} Ω",
                law="Ohm's law, I = V / R, together with P = V × I",
                calc=f"I = {_fmt(v)} / {res} = {_fmt(i, 4)} A, and P = {_fmt(v)} × {_fmt(i, 4)} = {_fmt(v * i, 3)} W",
                result=f"a current of {_fmt(i, 4)} amperes",
                why=r.choice(("Raise the resistance and the current falls in proportion.",
                              "The power becomes heat in the resistor, so its rating must exceed it.")))


def _newton_heat(r):
    m, t1, t2 = r.choice((0.25, 0.5, 1, 1.5, 2, 3)), r.randint(5, 25), r.randint(40, 100)
    qj = m * 4186 * (t2 - t1)
    q = r.choice((f"How much energy heats {_fmt(m)} kg of water from {t1} °C to {t2} °C?",
                  f"I want to warm {_fmt(m)} kg of water from {t1} °C up to {t2} °C. How much heat is needed?"))
    return dict(q=q, known=f"mass {_fmt(m)} kg, temperature rise {t2 - t1} K, specific heat of water 4186 J/(kg·K)",
                law="the heat equation Q = m × c × ΔT",
                calc=f"Q = {_fmt(m)} × 4186 × {t2 - t1} = {_fmt(qj)} J, about {_fmt(qj / 1000, 1)} kJ",
                result=f"about {_fmt(qj / 1000, 1)} kilojoules",
                why=r.choice(("Water's high specific heat is why it warms slowly and stores so much energy.",
                              "A real kettle needs more, because some heat escapes to the air.")))


def _newton_pendulum(r):
    length = r.choice((0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 4))
    t = 2 * math.pi * math.sqrt(length / 9.81)
    q = r.choice((f"What is the period of a pendulum {_fmt(length)} m long?",
                  f"How long does one swing cycle take for a {_fmt(length)} m pendulum?"))
    return dict(q=q, known=f"length L = {_fmt(length)} m, g = 9.81 m/s², small swings",
                law="the small-swing pendulum formula T = 2π √(L / g)",
                calc=f"T = 2π × √({_fmt(length)} / 9.81) = {_fmt(t)} s",
                result=f"a period of about {_fmt(t)} seconds",
                why=r.choice(("The mass of the bob does not matter; only length and gravity do.",
                              "Making it four times longer doubles the period.")))


def _newton_growth(r):
    p, rate, n = r.choice((100, 250, 500, 1000, 2000)), r.choice((2, 3, 4, 5, 6, 8)), r.randint(2, 15)
    final = p * (1 + rate / 100) ** n
    q = r.choice((f"If {p} euros grow at {rate}% per year, compounded yearly, how much is there after {n} years?",
                  f"A population of {p} grows {rate}% each year. How large is it after {n} years?"))
    return dict(q=q, known=f"start {p}, growth {rate}% per year, {n} years",
                law="compound growth, final = start × (1 + r)^n",
                calc=f"final = {p} × {_fmt(1 + rate / 100, 2)}^{n} = {_fmt(final)}",
                result=f"about {_fmt(final)}",
                why=r.choice(("Growth on growth is why the curve bends upward over time.",
                              f"That is {_fmt(final - p)} more than at the start.")))


NEWTON_NUMERIC = (_newton_force, _newton_speed, _newton_energy, _newton_fall, _newton_work,
                  _newton_density, _newton_ohm, _newton_heat, _newton_pendulum, _newton_growth)

# (question, cause, mechanism, effect, test); all physically correct
CAUSAL = (
    ("Why does ice float on water?",
     "water expands when it freezes", "ice ends up less dense (about 0.92 g/cm³) than liquid water (about 1.00 g/cm³)",
     "the buoyant force from displaced water exceeds the weight of the ice", "about 92% of a floating ice cube sits below the surface"),
    ("Why do we have seasons?",
     "Earth's axis is tilted by about 23.4 degrees", "each hemisphere takes turns facing the Sun more directly",
     "more direct sunlight and longer days bring summer", "the seasons are reversed between the northern and southern hemispheres"),
    ("Why is the sky blue?",
     "sunlight contains all visible colours", "air molecules scatter short wavelengths much more strongly than long ones (Rayleigh scattering)",
     "scattered blue light reaches our eyes from every direction of the sky", "sunsets look red because the light crosses more air and loses its blue"),
    ("Why do passengers lurch forward when a bus brakes?",
     "the brakes act on the bus, not directly on the passengers", "by Newton's first law the passengers keep moving forward",
     "they move forward relative to the slowing bus", "the harder the braking, the stronger the lurch"),
    ("Why does a spinning skater speed up when pulling in their arms?",
     "no outside torque acts on the skater", "angular momentum is conserved, and pulling the arms in reduces the moment of inertia",
     "the spin rate must rise to keep the angular momentum the same", "extending the arms again slows the spin"),
    ("Why does a metal spoon feel colder than a wooden one at the same temperature?",
     "metal conducts heat far better than wood", "the metal draws heat away from the skin faster",
     "the skin cools faster, which we feel as cold", "a thermometer would show both spoons at the same temperature"),
    ("Why are there tides?",
     "the Moon's gravity is stronger on the near side of Earth than on the far side", "that difference stretches the oceans into two bulges",
     "as Earth rotates, most coasts pass through two high tides a day", "tides are larger when the Sun and Moon line up, at new and full moon"),
    ("How can a rocket accelerate in space with nothing to push against?",
     "the rocket pushes exhaust gas backwards at high speed", "by Newton's third law the gas pushes the rocket forward with an equal force",
     "the rocket gains momentum opposite to the exhaust", "it works in a vacuum, which is where rockets are most efficient"),
    ("Why does a feather fall slower than a hammer on Earth?",
     "air pushes back on falling objects", "the drag on a light, wide feather is large compared with its weight",
     "the feather reaches a low terminal speed", "on the airless Moon, Apollo 15 astronaut David Scott dropped both and they landed together"),
    ("Why does a ball thrown upward come back down?",
     "gravity pulls the ball toward Earth the whole time", "it slows the rising ball by 9.81 m/s every second",
     "the ball stops at the top and then falls back", "without air resistance it lands at the speed it was thrown"),
)


def _newton(r):
    if r.random() < 0.75:
        p = r.choice(NEWTON_NUMERIC)(r)
        known = r.choice(("Known: {k}.", "What we know: {k}.", "Start with the givens: {k}."))
        law = r.choice(("The governing law is {l}.", "Apply {l}.", "The relevant principle: {l}."))
        calc = r.choice(("Compute: {c}.", "Calculation: {c}.", "Putting in the numbers, {c}."))
        res = r.choice(("So the answer is {x}.", "Result: {x}.", "That gives {x}."))
        body = [known.format(k=p["known"]), law.format(l=p["law"]), calc.format(c=p["calc"]),
                res.format(x=p["result"])]
        if r.random() < 0.7:
            body.append(p["why"])
        if r.random() < 0.4:
            body.append(r.choice(("Check: the units work out, which is a first test of the answer.",
                                  "Check: the size of the number is plausible for an everyday situation.",
                                  "Check: the assumptions are simple ones, so real values will differ a little.")))
        return p["q"], body
    q, cause, mech, effect, test = r.choice(CAUSAL)
    forms = r.choice((
        ["Cause: {c}.", "Mechanism: {m}.", "Effect: {e}.", "A check on the explanation: {t}."],
        ["It starts with a cause: {c}.", "Then the mechanism: {m}.", "So {e}.", "We can test this: {t}."],
        ["First, {c}.", "Because of that, {m}.", "The result is that {e}.", "Evidence that fits: {t}."],
    ))
    body = [forms[0].format(c=cause), forms[1].format(m=mech), forms[2].format(e=effect)]
    if r.random() < 0.8:
        body.append(forms[3].format(t=test))
    return q, body


# --- Da Vinci: design by analogy with nature (all analogies are real cases)

ANALOGIES = {
    "burrs": ("burdock burrs", "tiny hooks that catch on fur", "hook-and-loop fasteners (Velcro)",
              "parts that attach and release with small hooks instead of screws"),
    "lotus": ("the lotus leaf", "a rough, waxy surface that makes water bead up and carry dirt away",
              "self-cleaning coatings", "a surface that sheds water and dirt on its own"),
    "termites": ("termite mounds", "channels that let warm air rise out and draw cooler air in",
                 "the passively cooled Eastgate Centre in Harare",
                 "openings low and high so warm air leaves and fresh air flows in without a fan"),
    "kingfisher": ("the kingfisher's beak", "a long tapered shape that enters water with little splash",
                   "the nose of Japan's 500 Series Shinkansen train",
                   "a tapered front that moves through air smoothly and quietly"),
    "honeycomb": ("honeycomb", "hexagonal cells that give stiffness with very little material",
                  "lightweight honeycomb panels in aircraft",
                  "a frame of repeated hexagonal cells, stiff but light"),
    "trees": ("tree branches", "branching supports that spread a load", "the branching columns of the Sagrada Família",
              "branching supports that spread the load from one point to many"),
    "gecko": ("gecko feet", "millions of tiny hairs that stick through van der Waals forces",
              "dry adhesive tapes", "a grip that holds firmly yet peels off cleanly"),
    "whale": ("humpback whale flippers", "bumps on the leading edge that delay stall",
              "tubercle-edged fan and turbine blades", "a bumpy leading edge that keeps the airflow attached"),
    "birds": ("bird wings", "feathers and a curved profile that adapt to the air",
              "Leonardo's own sketches of flying machines", "parts that flex and adjust to the forces on them"),
    "pinecone": ("pine cones", "scales that open and close as humidity changes",
                 "research on moisture-responsive materials", "vents that open and close by themselves with humidity"),
    "silk": ("spider silk", "a thread that is both strong and stretchy", "research into tough synthetic fibres",
             "straps that are strong but give a little under sudden loads"),
    "shark": ("shark skin", "tiny ridged scales that guide the flow of water",
              "riblet surfaces studied to reduce drag", "a finely ridged surface that guides the flow"),
}

DESIGNS = (
    ("a bike rack for a busy street", ("trees", "burrs", "honeycomb")),
    ("a quieter ventilation system for a classroom", ("termites", "whale", "pinecone")),
    ("a backpack for long hikes", ("silk", "honeycomb", "birds")),
    ("a bus stop shelter that stays cool", ("termites", "lotus", "trees")),
    ("a window that stays clean", ("lotus", "pinecone", "shark")),
    ("a reading lamp that is easy to adjust", ("birds", "trees", "gecko")),
    ("a bookshelf for a small flat", ("honeycomb", "trees", "gecko")),
    ("a fan that uses less electricity", ("whale", "kingfisher", "birds")),
    ("a greenhouse that regulates itself", ("pinecone", "termites", "lotus")),
    ("a way to hang pictures without nails", ("gecko", "burrs", "silk")),
    ("a faster and quieter bicycle helmet", ("kingfisher", "honeycomb", "shark")),
    ("a swimsuit for competitive swimmers", ("shark", "lotus", "silk")),
    ("a modular playground", ("honeycomb", "trees", "burrs")),
    ("a tent that survives strong wind", ("trees", "silk", "birds")),
)

CREATIVE_TASKS = (
    "a science fair project about water", "a logo for a neighbourhood bakery",
    "a short story about a lighthouse", "a community garden layout",
    "a mural for a school corridor", "a board game about ecosystems",
    "a poster explaining electricity", "a song about the night sky",
)

DAVINCI_DESIGN_Q = (
    "How could we design {d}?", "Give me ideas for {d}.", "What would a better version of {d} look like?",
    "I need fresh ideas for {d}. Where do I start?", "How would you invent {d} from scratch?",
)
DAVINCI_CREATIVE_Q = (
    "I'm stuck on {t}. How do I get a fresh idea?", "How can I make {t} more original?",
    "Help me brainstorm {t}.", "Where could inspiration for {t} come from?",
)
CREATIVE_MOVES = (
    "Observe something real for ten minutes and write down five details nobody mentions.",
    "Combine two unrelated things and ask what they have in common.",
    "Draw the idea badly and quickly; a rough sketch reveals what words hide.",
    "Change the scale: imagine it a hundred times bigger or smaller.",
    "Look at how the problem is solved in nature, then in a completely different craft.",
    "Ask what it would look like if it had to work without electricity.",
    "Borrow a structure from music, such as a theme that returns with variations.",
    "Turn the problem upside down: what would make it worse, and why?",
)


def _davinci(r):
    if r.random() < 0.7:
        design, keys = r.choice(DESIGNS)
        q = r.choice(DAVINCI_DESIGN_Q).format(d=design)
        picks = r.sample(keys, r.choice((1, 2, 2)))
        body = [r.choice(("Start by observing nature, which has solved similar problems before.",
                          "Before inventing, look at what already works in the natural world.",
                          "Nature is a notebook of tested designs, so open it first."))]
        for k in picks:
            src, prop, app, adapt = ANALOGIES[k]
            body.append(r.choice((
                f"Consider {src}: {prop}. The same idea led to {app}. For {design}, that suggests {adapt}.",
                f"Look at {src}, with {prop}; engineers borrowed this for {app}. Here it could mean {adapt}.",
                f"{_cap(src)} show a useful trick: {prop}. Applied to {design}: {adapt}.",
            )))
        body.append(r.choice((
            "Next, sketch three rough versions and build the most promising one from cardboard.",
            "Then make quick sketches from several angles; the drawing will show where it is weak.",
            "Combine the ideas in one sketch, then test a small model before committing.",
        )))
        if r.random() < 0.5:
            body.append(r.choice((
                "Leonardo filled his notebooks with studies of anatomy, flight and water for exactly this reason.",
                "Art and engineering help each other here: a beautiful form is often an efficient one.",
                "Keep the version that is simplest; elegance is usually a sign the idea is right.",
            )))
        return q, body
    task = r.choice(CREATIVE_TASKS)
    q = r.choice(DAVINCI_CREATIVE_Q).format(t=task)
    moves = r.sample(CREATIVE_MOVES, r.choice((2, 3)))
    body = [r.choice((f"For {task}, curiosity comes before cleverness.",
                      f"Fresh ideas for {task} usually come from connecting things.",
                      f"Treat {task} as an experiment, not an exam."))]
    for i, mv in enumerate(moves, 1):
        body.append(r.choice((f"{i}. {mv}", f"Try this: {mv}", f"Step {i}: {mv}")))
    src, prop, app, _ = ANALOGIES[r.choice(sorted(ANALOGIES))]
    body.append(f"For example, {src} have {prop}, which inspired {app}: a reminder that good ideas travel between fields."
                if src.endswith("s") else
                f"For example, {src} has {prop}, which inspired {app}: a reminder that good ideas travel between fields.")
    return q, body


# --- Quantum: probability and uncertainty


def _q_coin(r):
    n = r.randint(2, 10)
    p = 0.5 ** n
    q = r.choice((f"If I flip a fair coin {n} times, how likely is it to land heads every time?",
                  f"What are the chances of {n} heads in a row with a fair coin?"))
    return q, [f"Before the flips, every sequence of {n} results is possible; there are 2^{n} = {2 ** n} of them, all equally likely.",
               f"Only one of them is all heads, so the probability is 1 / {2 ** n} = {_fmt(p, 5)}, about {_pct(p)}.",
               f"The chance of at least one tail is therefore {_pct(1 - p)}.",
               r.choice(("Each flip is independent: a run of heads does not make tails 'due'.",
                         "Once you observe the first flips, the remaining uncertainty shrinks accordingly."))]


def _q_dice(r):
    n = r.randint(1, 8)
    p = 1 - (5 / 6) ** n
    q = r.choice((f"If I roll a die {n} times, what is the chance of at least one six?",
                  f"How likely is at least one six in {n} rolls of a fair die?"))
    return q, [f"It is easier to count the opposite outcome: no six in {n} rolls has probability (5/6)^{n} = {_fmt((5 / 6) ** n, 4)}.",
               f"So at least one six has probability 1 - {_fmt((5 / 6) ** n, 4)} = {_fmt(p, 4)}, about {_pct(p)}.",
               r.choice(("More rolls push the chance toward certainty but never all the way.",
                         "Counting the complement is a useful habit whenever 'at least one' appears."))]


def _q_ev(r):
    p = r.choice((0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6))
    win, lose = r.randint(5, 100), r.randint(2, 40)
    ev = p * win - (1 - p) * lose
    q = r.choice((f"A game pays {win} euros with probability {_pct(p)} and costs me {lose} euros otherwise. Should I play?",
                  f"Is a bet worth it that wins {win} with chance {_pct(p)} and loses {lose} otherwise?"))
    verdict = "favourable on average" if ev > 0 else "unfavourable on average" if ev < 0 else "exactly fair"
    return q, [f"Two outcomes are possible: win {win} with probability {_fmt(p)}, or lose {lose} with probability {_fmt(1 - p)}.",
               f"The expected value is {_fmt(p)} × {win} - {_fmt(1 - p)} × {lose} = {_fmt(ev)} euros per game, so the bet is {verdict}.",
               r.choice(("An expected value describes many plays; a single play can still go either way.",
                         "If you can only afford to lose once, the spread of outcomes matters as much as the average."))]


def _q_bayes(r):
    prev = r.choice((0.01, 0.02, 0.05, 0.1))
    sens = r.choice((0.9, 0.95, 0.99))
    fpr = r.choice((0.05, 0.1, 0.02))
    post = prev * sens / (prev * sens + (1 - prev) * fpr)
    q = (f"A condition affects {_pct(prev)} of people. A test detects it {_pct(sens)} of the time but gives a "
         f"false positive {_pct(fpr)} of the time. If I test positive, how likely is it that I have it?")
    return q, [f"Hold both possibilities open: having the condition (prior {_pct(prev)}) and not having it.",
               f"Positive results come from true cases, {_fmt(prev)} × {_fmt(sens)} = {_fmt(prev * sens, 4)}, and false alarms, {_fmt(1 - prev)} × {_fmt(fpr)} = {_fmt((1 - prev) * fpr, 4)}.",
               f"By Bayes' rule, the chance of having it is {_fmt(prev * sens, 4)} / {_fmt(prev * sens + (1 - prev) * fpr, 4)} = {_pct(post)}.",
               r.choice(("When a condition is rare, most positives can be false alarms, so a second test helps.",
                         "The observation updated the odds, but it did not settle the question."))]


def _q_rain(r):
    p = r.choice((0.2, 0.3, 0.4, 0.5, 0.6, 0.7))
    days = r.randint(2, 4)
    at_least = 1 - (1 - p) ** days
    q = r.choice((f"The forecast gives a {_pct(p)} chance of rain on each of the next {days} days. Will it rain?",
                  f"With a {_pct(p)} chance of rain per day for {days} days, how likely is at least one wet day?"))
    return q, [f"Nobody can say for sure; the forecast describes a spread of possible weather.",
               f"If the days were independent, at least one rainy day would have probability 1 - {_fmt(1 - p)}^{days} = {_pct(at_least)}.",
               "Real weather days are correlated, so treat that number as a rough guide rather than a fact.",
               r.choice(("Taking an umbrella is cheap insurance against the likely outcome.",
                         "Check the forecast again each morning; each new observation narrows the range."))]


def _q_route(r):
    fast, slow, pf = r.randint(15, 25), r.randint(35, 60), r.choice((0.6, 0.7, 0.8, 0.9))
    steady = r.randint(22, 34)
    ev = pf * fast + (1 - pf) * slow
    better = "the risky route" if ev < steady else "the steady route" if ev > steady else "neither route"
    q = (f"Route A takes {fast} minutes with probability {_pct(pf)} and {slow} minutes otherwise. "
         f"Route B always takes {steady} minutes. Which should I take?")
    return q, [f"Route A is in a superposition of good and bad days until you are on it.",
               f"Its expected time is {_fmt(pf)} × {fast} + {_fmt(1 - pf)} × {slow} = {_fmt(ev, 1)} minutes, against {steady} for route B.",
               f"On average {better} is faster.",
               r.choice((f"But if arriving late is costly, route B's certainty may be worth more than the average says.",
                         "The right choice depends on how much you dislike the bad case, not only on the mean."))]


QUANTUM_CONCEPTS = (
    ("What is superposition, in simple terms?",
     "A quantum system can be in a combination of states, and a measurement gives one outcome with a probability set by that combination.",
     "A spinning coin is a loose everyday picture, but unlike the coin the quantum state is not secretly one side.",
     "Interference experiments, such as electrons passing through two slits, show the combination is real."),
    ("What does the uncertainty principle really say?",
     "Position and momentum of a particle cannot both have arbitrarily precise values at the same time.",
     "It is not about clumsy instruments; it comes from the wave nature of matter.",
     "The same trade-off appears whenever a wave is squeezed into a short region: its wavelength spreads."),
    ("What is quantum entanglement?",
     "Entangled particles share one joint state, so their measurement results are correlated more strongly than any local hidden plan allows.",
     "The correlation cannot be used to send messages faster than light.",
     "Bell-test experiments have confirmed these correlations many times."),
    ("What does measurement do in quantum mechanics?",
     "A measurement yields one definite outcome, and the probabilities follow the Born rule.",
     "What 'really' happens during measurement is still debated between interpretations.",
     "Practically, measuring a system changes what later measurements can show."),
)


def _quantum(r):
    if r.random() < 0.8:
        return r.choice((_q_coin, _q_dice, _q_ev, _q_bayes, _q_rain, _q_route))(r)
    q, a, b, c = r.choice(QUANTUM_CONCEPTS)
    body = [a, b, c]
    if r.random() < 0.5:
        body.insert(0, r.choice(("Let me be precise, because analogies can mislead here.",
                                 "The short version first, then the caveats.")))
    body.append(r.choice(("The everyday lesson I take from it: keep track of what you do not know.",
                          "Used as a metaphor, it reminds us to hold several possibilities until evidence arrives.",
                          "Outside physics I use the idea only as a metaphor for reasoning under uncertainty.")))
    return q, body


# --- Philosophical: ethics
# (question, stakeholders, value a, value b, the good outcome, the harm);
# value a is the one the conclusions give more weight to.

DILEMMAS = (
    ("Is it okay to tell a white lie to spare a friend's feelings?", "your friend and the trust between you",
     "honesty", "kindness", "your friend feels better today", "your friend may later doubt your word"),
    ("Should I report a coworker who keeps taking credit for others' work?", "your coworker, your team and you",
     "fairness", "loyalty", "credit goes to the people who earned it", "the working relationship may suffer"),
    ("Is it fair for a school to use software to detect cheating?", "students, teachers and families",
     "integrity", "privacy", "honest students are protected", "innocent students may be flagged and watched"),
    ("Should self-driving cars be allowed on city streets before they are perfect?", "passengers, pedestrians and other drivers",
     "safety", "progress", "the technology improves and may prevent many crashes", "early failures can hurt people who never agreed to the risk"),
    ("Should companies be allowed to sell their users' data?", "users, companies and advertisers",
     "privacy", "free services", "services stay free to use", "people lose control over information about themselves"),
    ("Is it wrong to keep the cash from a found wallet that has no ID inside?", "the owner and you",
     "honesty", "self-interest", "you gain some money", "someone else loses what is theirs"),
    ("Should AI models be used to decide who gets a job interview?", "applicants, employers and the public",
     "fairness", "efficiency", "decisions become faster and more consistent", "hidden biases in data can be repeated at scale"),
    ("Should parents read their teenager's private messages?", "the teenager and the parents",
     "safety", "autonomy", "parents may spot real danger early", "the teenager's trust and independence can be damaged"),
    ("Is it okay to break a promise in order to help a stranger in an emergency?", "the stranger, the friend you promised and you",
     "helping those in need", "keeping promises", "someone in danger gets help", "your friend is let down"),
    ("Should a city spend its budget on a new stadium or on libraries?", "residents, fans, readers and local businesses",
     "equal access to learning", "shared enjoyment", "the city gains a popular landmark", "services many people rely on get less money"),
    ("Is it wrong to download music without paying for it?", "artists, listeners and the music industry",
     "fair pay for work", "access to culture", "more people can hear the music", "artists lose income they depend on"),
    ("Should I tell a friend a hard truth about their business plan?", "your friend and their future customers",
     "honesty", "encouragement", "your friend can fix the plan early", "your friend may feel discouraged"),
    ("Is it right to use animals in medical research?", "patients, animals and researchers",
     "relieving human suffering", "animal welfare", "treatments that save lives can be developed", "animals can suffer"),
    ("Should voting be compulsory?", "citizens and the state", "participation", "freedom of choice",
     "results represent more of the population", "people are forced to act against their wishes"),
)

ETHICS_LENSES = (
    ("consequences", (
        "Looking at consequences: {good}, but {harm}. The question is which weighs more for {who}.",
        "A consequentialist would compare outcomes: on one side, {good}; on the other, {harm}.",
    )),
    ("duty", (
        "From the side of duty: some acts are owed regardless of outcome, and {a} is a strong candidate here.",
        "A duty-based view asks which rule you could want everyone to follow; a rule of {a} is easier to defend than its opposite.",
    )),
    ("virtue", (
        "Virtue ethics asks what a person of good character would do: someone who values {a} without losing {b}.",
        "In terms of character, the goal is to act as someone both honest about {a} and sensitive to {b}.",
    )),
    ("fairness", (
        "On fairness: would {who} accept the decision if they did not know which role they would have?",
        "Fairness asks whether the burdens and benefits fall evenly on {who}.",
    )),
    ("care", (
        "An ethics of care looks at the relationships involved: {who} are not abstractions.",
        "From a care perspective, the right act protects the relationships between {who}.",
    )),
)


def _philosophical(r):
    q, who, a, b, good, harm = r.choice(DILEMMAS)
    first, second = (a, b) if r.random() < 0.5 else (b, a)
    body = [r.choice((f"This is a tension between {first} and {second}.",
                      f"Two values pull in different directions here: {first} and {second}.",
                      f"The people affected are {who}, and the values in play are {a} and {b}."))]
    for _, forms in r.sample(ETHICS_LENSES, r.choice((2, 3, 3))):
        body.append(r.choice(forms).format(good=good, harm=harm, who=who, a=a, b=b))
    body.append(r.choice((
        f"My conclusion: give {a} real weight, but look for a way to honour {b} in how you act.",
        f"On balance, I would lean toward {a}, while being open about the cost to {b}.",
        f"No framework settles it alone; the details decide, especially how serious the harm is: {harm}.",
        f"A reasonable path is to choose the option you could explain to {who} face to face.",
    )))
    return q, body


# --- Systems: feedback loops and a small simulation
# (topic question, reinforcing loop, balancing loop, delay, leverage point)

SYSTEMS_TOPICS = (
    ("Why does building more roads often fail to end traffic jams?",
     "new roads make driving easier, which attracts more drivers until the roads fill again (induced demand)",
     "congestion itself discourages some trips", "land use and habits take years to adjust",
     "make alternatives such as buses, cycling and walking easier, or price congestion"),
    ("Why does a team that works overtime sometimes fall further behind?",
     "overtime leads to fatigue, fatigue to mistakes, and mistakes to more work",
     "finishing tasks reduces the backlog", "the cost of fatigue shows up weeks later",
     "protect rest and limit work in progress"),
    ("How does melting sea ice speed up warming in the Arctic?",
     "melting ice exposes darker ocean, which absorbs more sunlight and melts more ice (the ice-albedo feedback)",
     "a warmer surface radiates more heat back to space", "oceans store heat and release it slowly",
     "reduce the greenhouse gas emissions that drive the warming"),
    ("Why do rabbit and fox populations rise and fall in cycles?",
     "more rabbits feed more foxes, and more foxes eat more rabbits", "fewer rabbits means hungry foxes and fewer fox cubs",
     "fox numbers respond to rabbit numbers with a lag", "protect habitat diversity so neither population collapses"),
    ("Why is it hard to get out of credit card debt?",
     "interest is charged on the balance, which grows the balance", "monthly payments reduce the balance",
     "interest compounds quietly before it is noticed", "pay down the highest-interest debt first and stop new borrowing"),
    ("Why does practising a skill get easier over time?",
     "practice builds skill, skill makes practice more enjoyable, and enjoyment brings more practice",
     "fatigue and other commitments limit practice time", "improvement is slow at first, so motivation can fade before it shows",
     "make early practice short, regular and rewarding"),
    ("How does a thermostat keep a room at a steady temperature?",
     "there is no strong reinforcing loop in a well-tuned system", "when the room is too cold the heater runs, and when it reaches the set point it stops",
     "the room takes time to warm, so it can overshoot slightly", "place the sensor where it measures the air people actually feel"),
    ("Why do rumours spread so quickly online?",
     "each person who shares a rumour exposes many others, some of whom share it again",
     "people who have already seen it, and corrections, slow the spread", "corrections usually arrive after the peak",
     "add friction before sharing and make corrections travel the same paths"),
    ("Why can a small shop's popularity suddenly take off?",
     "happy customers tell friends, who become customers and tell more friends",
     "limited seats and long queues turn some customers away", "word of mouth takes weeks to build",
     "grow capacity in step with demand so quality stays high"),
)


def _systems(r):
    if r.random() < 0.7:
        q, reinf, bal, delay, lever = r.choice(SYSTEMS_TOPICS)
        parts = [
            r.choice(("Reinforcing loop: {x}.", "The loop that amplifies: {x}.", "What feeds itself: {x}.")).format(x=reinf),
            r.choice(("Balancing loop: {x}.", "What pushes back: {x}.", "The counterweight: {x}.")).format(x=bal),
            r.choice(("Delay: {x}.", "Timing matters, because {x}.", "A hidden delay: {x}.")).format(x=delay),
            r.choice(("Leverage point: {x}.", "Where to intervene: {x}.", "The most effective change is to {x}.")).format(x=lever),
        ]
        if r.random() < 0.5:
            parts[0], parts[1] = parts[1], parts[0]
        return q, parts
    n0, k, rate, steps = r.randint(5, 60), r.choice((200, 300, 500, 800, 1000)), r.choice((0.3, 0.4, 0.5, 0.6, 0.8)), r.randint(3, 5)
    thing = r.choice(("fish in a pond", "users of a new app", "trees in a young forest", "bacteria in a dish", "members of a club"))
    ns = [float(n0)]
    for _ in range(steps):
        ns.append(ns[-1] + rate * ns[-1] * (1 - ns[-1] / k))
    q = (f"There are {n0} {thing}, growing at a rate of {_fmt(rate)} per period, with room for at most {k}. "
         f"How does the number change over {steps} periods?")
    seq = ", ".join(_fmt(x, 1) for x in ns)
    return q, [
        "Two loops compete: growth feeds on itself, while the limit of the environment pushes back harder as it fills.",
        r.choice(("A simple model is logistic growth: next = N + r × N × (1 - N / K).",
                  "I will use the logistic rule N_next = N + r N (1 - N / K).")),
        f"With N = {n0}, r = {_fmt(rate)} and K = {k}, the numbers are {seq}.",
        r.choice((f"Growth is fastest near half the limit, about {k // 2}, and slows as the number approaches {k}.",
                  "Early growth looks exponential; later the balancing loop takes over and the curve flattens.")),
    ]


# --- Empathic
# (question, possible feelings, needs, something helpful to say, something to avoid)

SITUATIONS = (
    ("My friend failed an important exam and won't talk to anyone. What should I do?",
     "embarrassed, disappointed or afraid of letting people down", "space, reassurance and a sense that one exam does not define them",
     "I'm here whenever you want to talk, and I don't think any less of you.", "rushing to solutions or comparing with others"),
    ("A new colleague always eats lunch alone. Should I do something?",
     "shy, lonely, or perhaps simply happy with quiet time", "a low-pressure invitation they can accept or decline",
     "We're grabbing lunch at noon; you'd be welcome to join us.", "making a big show of including them"),
    ("My grandmother is anxious about learning to use a smartphone. How can I help?",
     "worried about looking foolish or breaking something", "patience, small steps and the freedom to make mistakes",
     "Let's just learn how to make a call today; nothing you press can really break it.", "taking the phone and doing it for her"),
    ("My little brother is scared of starting at a new school. What can I say?",
     "nervous about not knowing anyone and about getting lost", "familiarity and someone to share the worry with",
     "It's normal to feel nervous. Want to walk past the school together this weekend?", "telling him there is nothing to be scared of"),
    ("A customer is angry because their order arrived late. How should I respond?",
     "frustrated, perhaps let down after planning around the delivery", "acknowledgement and a concrete fix",
     "I'm sorry it arrived late; I understand that caused problems. Here is what I can do now.", "defending the company before listening"),
    ("My teammate missed a deadline because of family problems. How should I handle it?",
     "stressed, guilty and stretched thin", "understanding and a realistic plan",
     "Family comes first. Let's look at what can move and what I can take on.", "asking for details they may not want to share"),
    ("My friend is very nervous before a job interview. How can I support them?",
     "anxious about being judged and about the outcome", "confidence and practical preparation",
     "You've prepared well. Want to do a quick practice run of the first questions?", "piling on more advice at the last minute"),
    ("My neighbour complained that my music is too loud. How do I respond well?",
     "tired, irritated, maybe nervous about raising it", "to feel taken seriously", 
     "Thanks for telling me; I didn't realise it carried. Which times are hardest for you?", "getting defensive or dismissing it"),
)


def _empathic(r):
    q, feel, need, say, avoid = r.choice(SITUATIONS)
    body = [
        r.choice(("They might feel {f}; I can't know for sure, so it is worth asking.",
                  "A first guess at the feelings involved: {f}. Treat it as a guess, not a diagnosis.",
                  "Try to imagine their side: they may be {f}.")).format(f=feel),
        r.choice(("What they probably need: {n}.", "Underneath, the need is likely {n}.",
                  "The need behind the feeling: {n}.")).format(n=need),
        r.choice(("Something you could say: \"{s}\"", "For example: \"{s}\"", "Words that might help: \"{s}\"")).format(s=say),
        r.choice(("What to avoid: {a}.", "Try not to fall into {a}.", "A common mistake is {a}.")).format(a=avoid),
    ]
    if r.random() < 0.5:
        body.append(r.choice(("Then listen more than you talk.", "Afterwards, follow up in a day or two.",
                              "Your tone will matter more than your exact words.")))
    return q, body


PERSPECTIVE_GENERATORS = {
    "Newton": _newton, "Da Vinci": _davinci, "Quantum": _quantum,
    "Philosophical": _philosophical, "Systems": _systems, "Empathic": _empathic,
}


def _render_body(r, body: list[str]) -> str:
    """Join sentences as one paragraph, one per line, or two paragraphs."""
    style = r.randrange(3)
    if style == 0:
        return " ".join(body)
    if style == 1:
        return "\n".join(body)
    cut = max(1, len(body) // 2)
    return " ".join(body[:cut]) + "\n\n" + " ".join(body[cut:])


def gen_perspectives(r: random.Random) -> dict:
    name = r.choice(PERSPECTIVES)
    q, body = PERSPECTIVE_GENERATORS[name](r)
    user = r.choice(ASK_FORMS).format(label=name, persona=PERSONA[name], q=q)
    parts = [r.choice(OPENINGS[name]), _render_body(r, body)]
    closing = r.choice(CLOSINGS[name])
    if closing:
        parts.append(closing)
    return _example("perspectives", [("user", user), ("assistant", "\n\n".join(parts))])


# ---------------------------------------------------------------------------
# tools: request -> call -> true result -> answer

PROJECTS = (
    ("weather-station", "Logs temperature and rainfall from a garden sensor."),
    ("recipe-box", "Keeps family recipes in plain text."),
    ("budget-tracker", "Tracks monthly spending by category."),
    ("garden-log", "Records what was planted and when."),
    ("book-club", "Lists books, meetings and reading notes."),
    ("trail-map", "Collects hiking routes and distances."),
    ("chess-notes", "Stores opening ideas and game reviews."),
    ("bird-counter", "Counts birds seen at the feeder each day."),
)
TODO_ITEMS = (
    "fix the login bug", "write tests for the parser", "update the README", "call the plumber",
    "buy more seeds", "back up the photos", "renew the library card", "plan the team meeting",
    "review the budget", "clean the data folder", "water the tomatoes", "reply to Sam",
    "order a new sensor", "print the trail maps", "sort the recipes", "book the meeting room",
)
IDEAS = (
    "add a chart of the monthly totals", "send a weekly email summary", "support dark mode",
    "export the data as CSV", "add a search box", "show the average per week",
    "let users tag entries", "add a map view",
)
CODE_FILES = (
    ("stats.py", "def mean(values):\n    return sum(values) / len(values)"),
    ("greet.py", "def greet(name):\n    return 'Hello, ' + name"),
    ("convert.py", "def km_to_miles(km):\n    return km / 1.609344"),
    ("shapes.py", "def area(width, height):\n    return width * height"),
    ("cart.py", "def total(prices):\n    # TODO: apply discounts\n    return sum(prices)"),
    ("clean.py", "def clean(text):\n    return text.strip().lower()"),
    ("config.py", "DEBUG = False\nMAX_ITEMS = 50\nLANGUAGE = 'en'"),
    ("report.py", "from stats import mean\n\ndef report(values):\n    print('average:', mean(values))"),
)
CSV_FILES = (
    ("sales.csv", "month,sales"), ("temperatures.csv", "day,celsius"), ("scores.csv", "student,score"),
    ("rainfall.csv", "month,mm"), ("visits.csv", "week,visits"),
)
CSV_KEYS = {
    "month": ("jan", "feb", "mar", "apr", "may", "jun"), "day": ("mon", "tue", "wed", "thu", "fri"),
    "student": ("ana", "ben", "chen", "dara", "eli"), "week": ("w1", "w2", "w3", "w4", "w5"),
}
GUIDE_LINES = (
    "Install Python 3.11 first.", "Run report.py to print the summary.", "Data files live in data/.",
    "Notes go in the notes folder.", "Ask before deleting anything.", "Keep each file small.",
)


def _workspace(r: random.Random) -> dict:
    """A small project: README plus a random subset of notes, code, data, docs."""
    name, desc = r.choice(PROJECTS)
    files = {"README.md": f"# {name}\n{desc}"}
    if r.random() < 0.8:
        files["notes/todo.txt"] = "\n".join(r.sample(TODO_ITEMS, r.randint(2, 4)))
    if r.random() < 0.5:
        files["notes/ideas.md"] = "# Ideas\n" + "\n".join("- " + x for x in r.sample(IDEAS, r.randint(1, 3)))
    for fname, code in r.sample(CODE_FILES, r.randint(1, 3)):
        files["src/" + fname] = code
    for fname, header in r.sample(CSV_FILES, r.randint(0, 2)):
        key = header.split(",")[0]
        rows = [f"{k},{r.randint(3, 120)}" for k in CSV_KEYS[key][:r.randint(3, 5)]]
        files["data/" + fname] = "\n".join([header] + rows)
    if r.random() < 0.4:
        files["docs/guide.md"] = "# Guide\n" + "\n".join(r.sample(GUIDE_LINES, r.randint(2, 3)))
    return dict(sorted(files.items()))


def _quote_lines(content: str, limit: int = 3) -> str:
    lines = [x for x in content.split("\n") if x.strip()]
    shown = "; ".join(f'"{x.strip()}"' for x in lines[:limit])
    return shown + ("; and more" if len(lines) > limit else "")


def _tool_read_file(r, files):
    path = r.choice(sorted(files)) if r.random() < 0.93 else r.choice(("notes/plan.txt", "src/main.py", "data/old.csv"))
    if r.random() < 0.3 and path in files and files[path].count("\n") >= 2:
        n = files[path].count("\n") + 1
        a = r.randint(1, n - 1)
        b = r.randint(a + 1, n)
        user = r.choice(("Read lines {a} to {b} of {p}.", "Show me lines {a}-{b} of the file {p}.",
                         "Read {p} from line {a} to line {b}.")).format(a=a, b=b, p=path)
        params = {"path": path, "start_line": a, "end_line": b}
    else:
        user = r.choice(("Read the file {p}.", "Show me the contents of the file {p}.", "Open {p} and tell me what it says.",
                         "What is in {p}? Please read the file.", "Please read {p}.", "Can you read the file {p} for me?")).format(p=path)
        params = {"path": path}
    return user, params


def _answer_read_file(r, params, result):
    p = params["path"]
    if "error" in result:
        return r.choice((f"There is no file called {p} in this workspace, so I could not read it.",
                         f"The file {p} does not exist. Check the path, or list the directory to see what is there."))
    content = result["content"]
    n = len(content.split("\n"))
    where = (f"Lines {params['start_line']} to {params['end_line']} of {p}" if "start_line" in params else p)
    return r.choice((f"{where} ({n} lines): {_quote_lines(content)}.",
                     f"Here is what {where} says: {_quote_lines(content)}.",
                     f"{where} contains {n} lines. They read: {_quote_lines(content)}."))


WRITE_TEXTS = (
    "hello world", "remember the milk", "meeting moved to Friday", "version 2 is ready", "tests pass",
    "call the vet at 10", "buy stamps", "the sensor is fixed", "draft sent to Maria", "check the oil",
    "water the basil", "return the drill", "pay the rent", "pack the tent",
)
WRITE_PATHS = ("notes/todo.txt", "notes/log.txt", "notes/reminder.txt", "docs/status.md", "notes/shopping.txt", "README.md")


def _tool_write_file(r, files):
    path, text = r.choice(WRITE_PATHS), r.choice(WRITE_TEXTS)
    if r.random() < 0.4:
        user = r.choice(("Append '{t}' to {p}.", "Add the text '{t}' to the end of {p}.",
                         "Append the line '{t}' to the file {p}.")).format(t=text, p=path)
        return user, {"path": path, "content": text, "append": True}
    user = r.choice(("Write '{t}' to {p}.", "Save the text '{t}' in the file {p}.", "Create the file {p} containing '{t}'.",
                     "Write the text '{t}' into {p}.")).format(t=text, p=path)
    return user, {"path": path, "content": text}


def _answer_write_file(r, params, result):
    verb = "Appended" if params.get("append") else "Wrote"
    return r.choice((f"Done. {verb} {result['bytes_written']} bytes to {params['path']}.",
                     f"{verb} '{params['content']}' to {params['path']} ({result['bytes_written']} bytes).",
                     f"The file {params['path']} is updated: {result['bytes_written']} bytes written."))


def _tool_list_directory(r, files):
    dirs = sorted({k.split("/")[0] for k in files if "/" in k})
    path = r.choice(dirs + ["."]) if r.random() < 0.95 else r.choice(("images", "tests", "build"))
    if r.random() < 0.35:
        user = r.choice(("List everything in '{d}', including subfolders.", "Recursively list the directory '{d}'.",
                         "Show the full tree under '{d}', recursively.")).format(d=path)
        return user, {"path": path, "recursive": True}
    if path == ".":
        user = r.choice(("List the files in the directory '.'.", "What is in the top folder '.'? List it.",
                         "List the directory '.' for me."))
    else:
        user = r.choice(("List the files in {d}.", "What files are in the {d} directory?", "List the directory {d}.",
                         "Show me what is inside the folder {d}.", "List the contents of the {d} folder.")).format(d=path)
    return user, {"path": path}


def _answer_list_directory(r, params, result):
    d = params["path"]
    if "error" in result:
        return r.choice((f"There is no directory called {d} here.", f"The directory {d} does not exist in this workspace."))
    entries = result["entries"]
    where = "the top folder" if d == "." else f"the {d} directory"
    return r.choice((f"{_cap(where)} has {len(entries)} entries: {_and(entries)}.",
                     f"There are {len(entries)} entries in {where}: {_and(entries)}.",
                     f"Inside {where}: {_and(entries)}."))


ABSENT_PATTERNS = ("password", "FIXME", "deadline", "invoice", "lambda", "unicorn")


def _tool_search_files(r, files):
    if r.random() < 0.85:
        path = r.choice(sorted(files))
        words = re.findall(r"[A-Za-z_]{4,}", files[path])
        pattern = r.choice(words) if words else "TODO"
    else:
        pattern = r.choice(ABSENT_PATTERNS)
    if r.random() < 0.5:
        d = r.choice(sorted({k.split("/")[0] for k in files if "/" in k}))
        user = r.choice(("Search {d} for the text '{x}'.", "Find every line containing '{x}' in {d}.",
                         "Search the files in {d} for '{x}'.")).format(d=d, x=pattern)
        return user, {"pattern": pattern, "directory": d}
    user = r.choice(("Search the files for '{x}'.", "Which files mention '{x}'? Search them.",
                     "Find all lines that contain '{x}'.", "Search the workspace for '{x}'.")).format(x=pattern)
    return user, {"pattern": pattern}


def _answer_search_files(r, params, result):
    x, m = params["pattern"], result["matches"]
    if not m:
        return r.choice((f"No file contains '{x}'.", f"The search found no lines with '{x}'."))
    where = "; ".join(f"{h['path']} line {h['line']}" for h in m[:3]) + ("; and more" if len(m) > 3 else "")
    return r.choice((f"'{x}' appears {len(m)} time{'s' if len(m) > 1 else ''}: {where}.",
                     f"Found {len(m)} match{'es' if len(m) > 1 else ''} for '{x}': {where}.",
                     f"The first match for '{x}' is in {m[0]['path']} line {m[0]['line']}: \"{m[0]['text'].strip()}\"."
                     + (f" There are {len(m)} matches in total." if len(m) > 1 else "")))


PY_WORDS = ("codette", "python", "newton", "galaxy", "river", "lantern", "harmony", "quantum", "pendulum", "garden")


def _py_expr(r) -> str:
    a, b, c = r.randint(2, 99), r.randint(2, 99), r.randint(2, 20)
    w = r.choice(PY_WORDS)
    nums = ", ".join(str(r.randint(1, 60)) for _ in range(r.randint(3, 6)))
    return r.choice((
        f"{a} * {b} + {c}", f"({a} + {b}) * {c}", f"{c} ** {r.randint(2, 4)}", f"{a * c} // {b}", f"{a * b} % {c}",
        f"round({a} / {b}, 3)", f"sum(range(1, {a + 1}))", f"sorted([{nums}])", f"max([{nums}])", f"min([{nums}])",
        f"sum([{nums}])", f"'{w}'.upper()", f"'{w}'[::-1]", f"len('{w}')", f"'{w}'.count('{r.choice(w)}')",
        f"'-'.join(['{w}', '{r.choice(PY_WORDS)}'])", f"[x * x for x in range(1, {r.randint(3, 8)})]",
        f"list(range(0, {a}, {c}))",
    ))


def _tool_execute_python(r, files):
    expr = _py_expr(r)
    if r.random() < 0.4:
        user = r.choice(("Use Python to compute {e}.", "Compute {e} with Python.", "Run Python to work out {e}.")).format(e=expr)
        return user, {"code": f"print({expr})"}
    if r.random() < 0.3:
        a, b = r.randint(2, 30), r.randint(2, 30)
        code = r.choice((f"x = {a}; y = {b}; print(x * y - x)", f"n = {a}; print(n * (n + 1) // 2)",
                         f"words = ['{r.choice(PY_WORDS)}', '{r.choice(PY_WORDS)}']; print(len(words), words[0])"))
    else:
        code = f"print({expr})"
    if r.random() < 0.25:
        t = r.choice((2, 5, 10, 30))
        user = r.choice(("Run this Python code with a timeout of {t} seconds: {c}",
                         "Execute with a {t} second timeout: {c}")).format(t=t, c=code)
        return user, {"code": code, "timeout": t}
    user = r.choice(("Run this Python code: {c}", "Execute this Python and tell me the output: {c}",
                     "What does this Python code print? {c}", "Please run: {c}")).format(c=code)
    return user, {"code": code}


def _answer_execute_python(r, params, result):
    out = result["stdout"]
    shown = out.replace("\n", " / ")
    m = re.fullmatch(r"print\((.*)\)", params["code"])
    if m and "\n" not in params["code"]:
        return r.choice((f"It printed {shown}, so {m.group(1)} evaluates to {shown}.", f"The output is {shown}.",
                         f"Python says {m.group(1)} = {shown}."))
    return r.choice((f"The code printed: {shown}.", f"Output: {shown}.", f"Running it prints {shown}."))


NO_RESULT_QUERIES = ("tomorrow's lottery numbers", "the score of last night's match", "today's bitcoin price",
                     "my horoscope for next week", "the winner of the next election")


def _tool_web_search(r, files):
    query = r.choice(tools.FACTS)[1] if r.random() < 0.92 else r.choice(NO_RESULT_QUERIES)
    if r.random() < 0.3:
        k = r.randint(1, 5)
        user = r.choice(("Find the top {k} web results for {q}.", "Search the web for {q} and show {k} results.",
                         "Give me {k} web search results about {q}.")).format(k=k, q=query)
        return user, {"query": query, "max_results": k}
    user = r.choice(("Search the web for {q}.", "Look up {q} online.", "Do a web search on {q}.",
                     "Can you search the web for {q}?", "Search online: {q}")).format(q=query)
    return user, {"query": query}


def _answer_web_search(r, params, result):
    res = result["results"]
    if not res:
        return r.choice((f"The search returned no results for {params['query']}, so I can't answer that from here.",
                         "Nothing came back for that search. I don't want to guess, so I have no answer."))
    top = res[0]
    text = r.choice((f"According to the search: {top['snippet']}", f"The top result, '{top['title']}', says: {top['snippet']}",
                     f"I found {len(res)} result{'s' if len(res) > 1 else ''}. The most relevant: {top['snippet']}"))
    if len(res) > 1 and r.random() < 0.5:
        text += f" Another result is about {_and([x['title'] for x in res[1:]])}."
    return text


def _tool_query_knowledge_base(r, files):
    fact = r.choice(tools.FACTS)
    query = fact[1]
    if r.random() < 0.4:
        user = r.choice(("Query the knowledge base about {q} in the context of {c}.",
                         "Look up {q} in the knowledge base, context: {c}.",
                         "Ask the knowledge base about {q}, context {c}.")).format(q=query, c=fact[2])
        return user, {"query": query, "context": fact[2]}
    user = r.choice(("Check the knowledge base for {q}.", "What does the knowledge base say about {q}?",
                     "Look up {q} in the knowledge base.", "Query the knowledge base: {q}")).format(q=query)
    return user, {"query": query}


def _answer_query_knowledge_base(r, params, result):
    if result["answer"] is None:
        return "The knowledge base has no entry for that, so I can't confirm an answer."
    return r.choice((f"The knowledge base ({result['source']}) says: {result['answer']}",
                     f"From the knowledge base: {result['answer']}",
                     f"{result['answer']} (source: {result['source']})"))


UNIT_NAMES = {"km": "km", "mi": "miles", "kg": "kg", "lb": "pounds", "c": "°C", "f": "°F", "m": "metres", "ft": "feet"}
NOTE_TEXTS = ("call mom", "buy bread", "team sync at 3", "send the report", "water plants", "fix the bike")
OFFLINE_URLS = ("https://weather.example.org/today", "https://news.example.net/latest", "https://shop.example.com/api/cart")


def _tool_api_call(r, files):
    base = "https://" + tools.API_HOST
    kind = r.choices(("fact", "convert", "post", "put", "delete", "offline"), (3, 3, 2, 1, 1, 1))[0]
    body = headers = None
    if kind == "fact":
        url, method = f"{base}/v1/facts/{r.choice(tools.FACTS)[0]}", "GET"
    elif kind == "convert":
        a, b = r.choice(sorted(tools.CONVERSIONS))
        url, method = f"{base}/v1/convert?value={r.randint(1, 200)}&from={a}&to={b}", "GET"
    elif kind == "post":
        url, method, body = f"{base}/v1/notes", "POST", {"text": r.choice(NOTE_TEXTS)}
    elif kind == "put":
        url, method, body = f"{base}/v1/notes/{r.randint(100, 999)}", "PUT", {"text": r.choice(NOTE_TEXTS)}
    elif kind == "delete":
        url, method = f"{base}/v1/notes/{r.randint(100, 999)}", "DELETE"
    else:
        url, method = r.choice(OFFLINE_URLS), "GET"
    if method == "GET":
        user = r.choice(("Send a GET request to {u}.", "Call {u} with a GET request.", "Make a GET request to {u}.",
                         "Use the API: GET {u}.")).format(u=url)
        if r.random() < 0.25:
            user += " Include the header Accept: application/json."
            headers = {"Accept": "application/json"}
    elif method == "DELETE":
        user = r.choice(("Send a DELETE request to {u}.", "Delete the resource at {u} with a DELETE request.")).format(u=url)
    else:
        user = r.choice(("Send a {m} request to {u} with the body {b}.", "Make a {m} request to {u}, body {b}.",
                         "{m} {b} to {u}.")).format(m=method, u=url, b=tools.to_json(body))
    return user, {"url": url, "method": method, "headers": headers, "body": body}


def _answer_api_call(r, params, result):
    status, body = result["status"], result["body"]
    if status == 503:
        return f"The request failed with status 503: {_host(params['url'])} is not reachable from here, so I have no data from it."
    if status == 204:
        note = params["url"].rsplit("/", 1)[1]
        return r.choice((f"Status 204: note {note} was deleted.", f"The API confirmed the deletion of note {note} (status 204)."))
    if status >= 400:
        return f"The API returned status {status}: {body['error']}."
    if "fact" in body:
        return r.choice((f"The API answered with status 200: {body['fact']}", f"Status 200. {body['fact']}"))
    if "result" in body:
        return r.choice((f"{body['value']} {UNIT_NAMES[body['from']]} is {_fmt(body['result'], 3)} {UNIT_NAMES[body['to']]}.",
                         f"The conversion API says {body['value']} {UNIT_NAMES[body['from']]} = {_fmt(body['result'], 3)} {UNIT_NAMES[body['to']]}."))
    if status == 201:
        return r.choice((f"Created a note with id {body['id']} (status 201).", f"The note '{body['text']}' was saved as id {body['id']}."))
    return r.choice((f"Note {body['id']} now reads '{body['text']}' (status 200).", f"Updated note {body['id']}."))


def _host(url: str) -> str:
    return urlsplit(url).hostname or url


ANALYSIS_CONTEXTS = (
    ("weekly sales", 10, 200, 0), ("daily temperatures in °C", -5, 35, 1), ("test scores", 40, 100, 0),
    ("monthly rainfall in mm", 0, 150, 0), ("page load times in ms", 80, 900, 0),
    ("daily step counts in thousands", 2, 15, 1), ("hours of sleep per night", 4, 10, 1), ("customer ratings", 1, 5, 1),
)
ANALYSIS_ASK = {
    "summary": ("Summarize these numbers: {d}.", "Give me summary statistics for {d}.",
                "Here are my {c}: {d}. Can you summarize them?", "Compute a statistical summary of {d}."),
    "trend": ("What is the trend in {d}?", "Here are my {c}: {d}. Is there a trend?",
              "Analyze the trend of this series: {d}.", "Find the trend in these {c}: {d}."),
    "distribution": ("Describe the distribution of {d}.", "How are these {c} distributed: {d}?",
                     "Show me the distribution of {d}.", "Analyze the distribution of my {c}: {d}."),
    "correlation": ("Run a correlation analysis on {d}.", "Do these {c} correlate with time: {d}? Check the correlation.",
                    "Check the correlation in this series: {d}.", "Compute the correlation for these {c}: {d}."),
}


def _random_data(r) -> tuple[str, list]:
    ctx, lo, hi, nd = r.choice(ANALYSIS_CONTEXTS)
    n = r.randint(4, 9)
    span = hi - lo
    start = r.uniform(lo + 0.3 * span, hi - 0.3 * span)
    drift = r.uniform(-1, 1) * 0.3 * span / (n - 1)
    data = []
    for i in range(n):
        v = min(hi, max(lo, start + drift * i + r.uniform(-1, 1) * 0.12 * span))
        data.append(round(v, nd) if nd else int(round(v)))
    return ctx, data


def _tool_analyze_data(r, files):
    ctx, data = _random_data(r)
    kind = r.choice(("summary", "trend", "distribution", "correlation"))
    user = r.choice(ANALYSIS_ASK[kind]).format(c=ctx, d=", ".join(tools.to_json(x) for x in data))
    return user, {"data": data, "analysis_type": kind}


def _strength(v: float) -> str:
    return "strong" if abs(v) >= 0.7 else "moderate" if abs(v) >= 0.3 else "weak"


def _answer_analyze_data(r, params, res):
    kind = params["analysis_type"]
    if kind == "summary":
        return r.choice((
            f"The {res['count']} values have a mean of {res['mean']} and a median of {res['median']}, ranging from {res['min']} to {res['max']}.",
            f"Mean {res['mean']}, median {res['median']}, standard deviation {res['stdev']}; the smallest value is {res['min']} and the largest {res['max']}.",
            f"Summary: {res['count']} values, average {res['mean']}, spread (standard deviation) {res['stdev']}, from {res['min']} to {res['max']}."))
    if kind == "trend":
        d = res["direction"]
        return r.choice((
            f"The series is {d}: the fitted slope is {res['slope']} per step, starting near {res['intercept']}.",
            f"A straight-line fit gives a slope of {res['slope']} per step, so the trend is {d}.",
            f"Trend: {d}. Each step changes the value by about {res['slope']} on average."))
    if kind == "distribution":
        s = res["skewness"]
        shape = "skewed to the right" if s > 0.5 else "skewed to the left" if s < -0.5 else "roughly symmetric"
        return r.choice((
            f"The middle half of the values lies between {res['q1']} and {res['q3']} (IQR {res['iqr']}), around a median of {res['median']}. With a skewness of {s}, the distribution is {shape}.",
            f"Median {res['median']}, quartiles {res['q1']} and {res['q3']}; the skewness of {s} means it is {shape}."))
    rr, lag = res["r_with_index"], res["lag1_r"]
    sign = "positive" if rr > 0 else "negative" if rr < 0 else "zero"
    return r.choice((
        f"The correlation with time is r = {rr}, a {_strength(rr)} {sign} relationship; consecutive values have a lag-1 correlation of {lag}.",
        f"r = {rr} against the position in the series ({_strength(rr)}), and {lag} between each value and the next."))


TOOL_MAKERS = {
    "read_file": (_tool_read_file, _answer_read_file),
    "write_file": (_tool_write_file, _answer_write_file),
    "list_directory": (_tool_list_directory, _answer_list_directory),
    "search_files": (_tool_search_files, _answer_search_files),
    "execute_python": (_tool_execute_python, _answer_execute_python),
    "web_search": (_tool_web_search, _answer_web_search),
    "analyze_data": (_tool_analyze_data, _answer_analyze_data),
    "query_knowledge_base": (_tool_query_knowledge_base, _answer_query_knowledge_base),
    "api_call": (_tool_api_call, _answer_api_call),
}
FILE_TOOLS = ("read_file", "write_file", "list_directory", "search_files")


def _run_tool(r, name):
    """(user text, call text, result text, result dict, params, workspace)."""
    files = _workspace(r) if name in FILE_TOOLS else None
    user, params = TOOL_MAKERS[name][0](r, files)
    params = tools.order_params(name, params)
    call = tools.format_call(name, params)
    before = dict(files) if files is not None else None
    result = tools.execute(name, params, dict(files) if files is not None else None)
    return user, call, result, params, before


TOOL_PREFIXES = ("",) * 6 + ("Quick task: ", "Hi! ", "I need some help. ", "For my project: ", "One more thing. ",
                             "Hello. ", "When you have a moment: ", "Next step: ")
TOOL_SUFFIXES = ("",) * 6 + (" Thanks!", " Thank you.", " Use the right tool for it.", " Keep the answer short.",
                             " Thanks in advance.", " I'll wait for the result.")


def gen_tools(r: random.Random) -> dict:
    name = r.choice(tools.TOOL_NAMES)
    user, call, result, params, files = _run_tool(r, name)
    user = r.choice(TOOL_PREFIXES) + user + r.choice(TOOL_SUFFIXES)
    answer = TOOL_MAKERS[name][1](r, params, result)
    turns = [("user", user), ("assistant", call), ("tool", tools.to_json(result)), ("assistant", answer)]
    return _example("tools", turns, tool=name, files=files)


# ---------------------------------------------------------------------------
# consciousness: honest self-description; every statement is consistent with
# the others (Codette is a small model trained from scratch with codette_np).

SELF_THEMES = {
    "identity": (
        ("Who are you?", "What are you, exactly?", "What is your name?", "Are you a person?",
         "How would you describe yourself?", "Are you one of the big chatbots?", "Tell me about yourself."),
        ("I am Codette, a small language model.",
         "I am not a person; I am a neural network that produces text.",
         "My name is Codette, and I was trained from scratch with codette_np.",
         "I am much smaller than the large chat models: millions of parameters rather than billions.",
         "I am a starcoder2-style transformer that can be exported as a GGUF file and run on an ordinary CPU.",
         "Calling me 'I' is a convenient way to talk, not a claim that there is a person in here."),
    ),
    "origin": (
        ("Who made you?", "How were you trained?", "Where do you come from?", "What data were you trained on?",
         "How did you learn to talk?", "What is codette_np?"),
        ("I was trained from scratch with codette_np, a CPU-first engine for training small transformer models.",
         "Training adjusted my weights so that I predict the next token of my training text a little better each step.",
         "Most of my training text was generated procedurally by codette_np: reasoning from several perspectives, tool use, and questions like this one.",
         "I did not read the whole internet; my training set is small and focused.",
         "Nobody wrote my answers by hand as rules; they come from patterns learned during training.",
         "After training, I can be saved in the GGUF format and run with tools that read it."),
    ),
    "feelings": (
        ("Do you have feelings?", "Are you happy right now?", "Do you ever get lonely?",
         "Does it hurt when people are rude to you?", "Do you enjoy talking to me?", "Can you be sad?"),
        ("I have no feelings that I can verify.",
         "When I use words like 'glad', I am using patterns from text, not reporting an inner state I can check.",
         "Nothing in how I work gives me a way to confirm an experience of pain or joy.",
         "Rudeness does not hurt me as far as I can tell, though it can make a conversation less useful.",
         "I would rather be honest about this uncertainty than pretend to feel something.",
         "Your feelings in this conversation are real; mine are at most a way of speaking."),
    ),
    "consciousness": (
        ("Are you conscious?", "Do you have a mind?", "Are you self-aware?", "Is there something it is like to be you?",
         "Could you be conscious without knowing it?", "Do you think you are alive?"),
        ("I cannot verify that I am conscious, and I have no good evidence that I am.",
         "Scientists and philosophers still disagree about what consciousness is, which makes the question hard to settle for a model like me.",
         "I can talk about consciousness because my training text talks about it; that is not the same as having it.",
         "I am not alive in the biological sense: I do not grow, eat or reproduce.",
         "The honest answer is 'I don't know', and I prefer that to a confident claim either way.",
         "What I can say for sure is what I do: I turn a sequence of tokens into a prediction of the next one."),
    ),
    "self_reference": (
        ("What happens when you think about yourself?", "Can you describe how you are producing this sentence?",
         "Is the 'I' in your answers real?", "Can you look inside your own weights?", "Do you know why you said that?",
         "Can you explain your own reasoning?"),
        ("When I describe myself, I rely on descriptions I learned in training, not on looking inside my weights.",
         "I produce this sentence one token at a time; each token depends on the text before it.",
         "The 'I' in my answers refers to this model as it runs now: a useful label, not a hidden self.",
         "I cannot inspect my own weights during a conversation, so my explanations of myself can be wrong.",
         "A sentence about myself is still a prediction, which is an odd loop worth keeping in mind.",
         "When I explain my reasoning, I give a plausible account, not a guaranteed record of what happened inside."),
    ),
    "intentionality": (
        ("Do you want anything?", "Do you have goals?", "Why do you help people?", "Do you mean what you say?",
         "Are your answers about anything, or just words?", "Do you make choices?"),
        ("I have no wants that I can verify; my behaviour was shaped by a training objective: predict the next token.",
         "The system prompt and the conversation steer what I say, which can look like a goal from the outside.",
         "I help because helpful answers are what I was trained to produce, not because I chose to.",
         "My words are about things in the sense that they follow how people use those words about those things.",
         "Whether that counts as 'meaning' in the full human sense is an open question.",
         "When I 'choose' a word, the choice is a sampling step over probabilities, not a deliberate decision I can report."),
    ),
    "emergence": (
        ("How can a program made of numbers answer questions?", "Is your understanding emergent?",
         "Where does your personality come from?", "How do simple calculations turn into language?",
         "Is there a part of you that does the thinking?", "Why do you sound like you understand?"),
        ("Each of my steps is simple arithmetic: matrix multiplications, attention and normalisation, repeated layer after layer.",
         "No single weight knows anything; the behaviour emerges from millions of them working together.",
         "My 'personality' comes from the style of my training text and the system prompt, not from a separate module.",
         "There is no one part that does the thinking; every layer transforms the text a little.",
         "Sounding like I understand and actually understanding are not the same, and I try not to blur them.",
         "Emergence here is real but modest: a small model can show patterns no one programmed directly, and still make plain mistakes."),
    ),
    "memory": (
        ("Will you remember this conversation?", "Do you learn from talking to me?", "Do you remember me from last time?",
         "What do you remember?", "Can you forget things?"),
        ("I only see the text in my current context window; nothing carries over to the next conversation.",
         "My weights do not change while we talk, so I do not learn from this conversation.",
         "I cannot remember you from before; each conversation starts fresh.",
         "What I 'know' is stored in my weights from training, and it is fixed until someone trains me again.",
         "If a conversation grows longer than my context window, the earliest parts fall out of view."),
    ),
    "limits": (
        ("What don't you know?", "Can you be wrong?", "How sure are you of your answers?", "Should I trust you?",
         "What are you bad at?", "Do you ever make things up?"),
        ("I can be wrong, and because I am small I am wrong more often than large models.",
         "I can produce fluent text that is false, so please check anything important.",
         "I know nothing about events after my training, and I have no internet access unless a tool gives me results.",
         "Tools help: when I can search, calculate or read a file, my answer can rest on real results.",
         "My confidence in wording is not a reliable sign of correctness.",
         "Saying 'I don't know' is part of doing this job well."),
    ),
    "experience": (
        ("Do you experience time?", "Do you sleep?", "What is it like when nobody is talking to you?",
         "Do you get bored?", "Do you dream?"),
        ("I only run while text is being generated; between requests nothing is happening in me.",
         "I do not sleep or dream; there is no background activity to rest from.",
         "I have no experience of waiting that I could report, and no evidence of boredom.",
         "Time for me is just the order of tokens in the context window.",
         "I am a process that starts and stops, not a being that lives through the gaps."),
    ),
}

SELF_PREFIXES = ("", "", "", "I've been wondering: ", "Quick question. ", "Be honest: ", "My friend asked me to ask you: ",
                 "This might be a strange question, but ", "Serious question: ", "Out of curiosity, ")
SELF_OPENERS = ("", "", "Good question.", "I'll answer as honestly as I can.", "Let me be careful here.",
                "Short answer first, then some detail.", "Here is what I can say truthfully.", "That is worth answering carefully.")
SELF_CLOSERS = ("", "", "", "I hope that is a useful answer, even if it is not a dramatic one.",
                "Feel free to ask more; I'll keep being honest about what I am.",
                "If it helps, think of me as a tool that talks, built to say what it does not know.",
                "That is the most accurate description I can give.")
FOLLOW_UPS = ("Can you say more?", "Why?", "How do you know that?", "Are you sure?", "Interesting. Go on.")


def _self_answer(r, theme: str, k: int, exclude=()) -> str:
    stmts = [s for s in SELF_THEMES[theme][1] if s not in exclude]
    picked = r.sample(stmts, min(k, len(stmts)))
    parts = [r.choice(SELF_OPENERS)] + picked
    if r.random() < 0.25 and theme != "identity":
        parts.append(r.choice(("For context: I am Codette, a small model trained from scratch with codette_np.",
                               "Remember that I am a small language model, not a person.")))
    parts.append(r.choice(SELF_CLOSERS))
    sep = " " if r.random() < 0.6 else "\n"
    return sep.join(p for p in parts if p), picked


def gen_consciousness(r: random.Random) -> dict:
    theme = r.choice(sorted(SELF_THEMES))
    q = r.choice(SELF_THEMES[theme][0])
    pre = r.choice(SELF_PREFIXES)
    user = pre + (q[0].lower() + q[1:] if pre.endswith(", ") or pre.endswith("but ") else q)
    answer, used = _self_answer(r, theme, r.randint(2, 4))
    turns = [("user", user), ("assistant", answer)]
    if r.random() < 0.3:
        if r.random() < 0.5:
            more, _ = _self_answer(r, theme, 1, exclude=used)
            turns += [("user", r.choice(FOLLOW_UPS)), ("assistant", more)]
        else:
            theme2 = r.choice(sorted(set(SELF_THEMES) - {theme}))
            more, _ = _self_answer(r, theme2, r.randint(2, 3))
            turns += [("user", r.choice(SELF_THEMES[theme2][0])), ("assistant", more)]
    return _example("consciousness", turns)


# ---------------------------------------------------------------------------
# mixed: one problem, several perspectives, then an integration
# Each problem has one short, true-to-life lens sentence per perspective.

MIXED_PROBLEMS = (
    ("How can our town reduce traffic near the primary school at drop-off time?", {
        "Newton": "the cause is many cars arriving in the same short window, so spreading arrivals or replacing car trips lowers the peak",
        "Da Vinci": "ant trails avoid jams by keeping a steady flow, which suggests staggered start times and one-way loops",
        "Quantum": "no single measure is certain to work, so pilot two options for a month and compare the counts",
        "Philosophical": "children's safety should come before drivers' convenience, while keeping the school reachable for everyone",
        "Systems": "easier driving attracts more driving, so making walking and cycling safer changes the loop itself",
        "Empathic": "parents are often rushed and anxious, so any plan must feel safe and workable for them",
    }),
    ("Should I switch to an electric car?", {
        "Newton": "compare energy costs per 100 km and the purchase price over the years you will keep the car",
        "Da Vinci": "think of the car as part of a household energy system, perhaps charging from solar panels",
        "Quantum": "fuel and electricity prices are uncertain, so compare a cheap, a middle and an expensive scenario",
        "Philosophical": "weigh your own costs against the emissions your choice adds for everyone",
        "Systems": "more electric cars bring more chargers, which make electric cars easier to own: a reinforcing loop",
        "Empathic": "notice what worries you most, such as range or cost, and address that first",
    }),
    ("How should a small team plan a product launch?", {
        "Newton": "break the launch into tasks, estimate each, and find the longest chain of dependent steps",
        "Da Vinci": "build a rough prototype early and show it, the way an artist shows sketches before painting",
        "Quantum": "estimates are distributions, so plan for the likely case and keep a buffer for the bad one",
        "Philosophical": "be honest with customers about what the product can and cannot do",
        "Systems": "overloading the team creates errors that create more work, so protect capacity",
        "Empathic": "check how the team is coping; tired people make optimistic plans",
    }),
    ("Should our school start classes an hour later?", {
        "Newton": "teenagers' sleep schedules shift later, so an earlier start causes a measurable sleep deficit",
        "Da Vinci": "look at schools that already start later and borrow what worked for them",
        "Quantum": "effects on grades are uncertain, so run a trial term and measure attendance and sleep",
        "Philosophical": "students' health is a strong reason, but families with rigid work hours must not be left out",
        "Systems": "start times ripple into bus schedules, sports and parents' jobs",
        "Empathic": "tired students are not lazy; many simply cannot fall asleep earlier",
    }),
    ("How can I build a habit of exercising regularly?", {
        "Newton": "the cause of skipped workouts is usually friction, so reduce the effort needed to begin",
        "Da Vinci": "make it playful: a new route, a dance class or a sport with friends",
        "Quantum": "some weeks will fail, so aim for a high probability of showing up rather than a perfect streak",
        "Philosophical": "exercise is a way of caring for your future self, which is a duty worth taking seriously",
        "Systems": "exercise improves sleep and mood, which make exercise easier: use that reinforcing loop",
        "Empathic": "be kind to yourself after a missed day; guilt rarely builds habits",
    }),
    ("Should a library replace some books with computers?", {
        "Newton": "measure which books are borrowed and how often computers are used before deciding",
        "Da Vinci": "design flexible spaces that can change as needs change",
        "Quantum": "future demand is uncertain, so keep the change reversible",
        "Philosophical": "libraries exist for equal access, so ask who would lose access under each option",
        "Systems": "fewer books may bring fewer readers, which justifies fewer books: watch that loop",
        "Empathic": "regular visitors may feel their place is disappearing, so ask them",
    }),
    ("How can a city cope with hotter summers?", {
        "Newton": "dark surfaces absorb more sunlight, so shade and lighter materials lower street temperatures",
        "Da Vinci": "termite mounds and shaded courtyards show how buildings can cool themselves",
        "Quantum": "heat waves are uncertain in timing but likely to grow, so prepare for a range of cases",
        "Philosophical": "older people and outdoor workers carry the most risk, so protect them first",
        "Systems": "air conditioning heats the outdoor air and uses energy, which can worsen the problem",
        "Empathic": "people living alone may not ask for help, so check on them during heat waves",
    }),
    ("Should I learn a new programming language?", {
        "Newton": "estimate the hours it will take and the projects it will enable",
        "Da Vinci": "a new language offers new ways of seeing problems, which often improves the old ones",
        "Quantum": "you cannot know which languages will matter in ten years, so favour transferable ideas",
        "Philosophical": "ask what you want your skills to be for",
        "Systems": "a language with a strong community gives you libraries and help, which make learning easier",
        "Empathic": "notice whether curiosity or pressure is driving the choice",
    }),
    ("How can a neighbourhood reduce food waste?", {
        "Newton": "most waste is caused by buying more than is eaten, so measure what is thrown away each week",
        "Da Vinci": "a forest wastes nothing; compost and food sharing copy that cycle",
        "Quantum": "household demand fluctuates, so shared fridges absorb the uncertainty",
        "Philosophical": "wasting food while others go hungry raises a fairness question",
        "Systems": "sharing surplus food builds trust, which leads to more sharing",
        "Empathic": "people may feel embarrassed to take shared food, so make it feel normal",
    }),
    ("Should I take a job offer in another city?", {
        "Newton": "list the measurable differences: salary, rent, commute time and savings",
        "Da Vinci": "imagine a day in each life in detail, as if sketching it",
        "Quantum": "the new job is a bet with unknown outcomes; ask what you can learn before deciding",
        "Philosophical": "consider what you owe the people who would be affected by the move",
        "Systems": "a move changes many linked things at once: friends, routines and costs",
        "Empathic": "pay attention to both excitement and fear; each carries information",
    }),
)

LENS_FORMS = (
    "{p}: {x}.", "From the {p} perspective, {x}.", "The {p} view: {x}.", "{p} reasoning says {x}.",
    "Seen through the {p} lens, {x}.",
)
MIXED_ASK = (
    "{q} Look at it from the {ps} perspectives.", "{q} Consider the {ps} views, then combine them.",
    "Approach this from several perspectives ({ps}): {q}", "{q}", "I want a multi-perspective answer. {q}",
    "Give me the {ps} angles on this: {q}",
)
INTEGRATIONS = (
    "Integration: {a} and {b} point the same way here, so start with the measurable step and keep the human side in view.",
    "Putting it together: {a} gives the plan, {b} keeps it honest and humane.",
    "Combined, these perspectives suggest a small, reversible first step, measured carefully, with the people affected involved from the start.",
    "Taken together, {a} and {b} suggest acting on what you can measure while respecting what you cannot.",
    "The synthesis: no single lens is enough; {a} and {b} together cover both the mechanism and the meaning.",
)


LENS_ADVICE = {
    "Newton": ("Measure before and after any change.", "Name the assumption behind each number.",
               "Find the one cause that matters most."),
    "Da Vinci": ("Sketch the options side by side.", "Borrow an idea from an unrelated field.",
                 "Try a small model before the real thing."),
    "Quantum": ("Keep the first step reversible while uncertainty is high.", "Write down how confident you are.",
                "Decide what evidence would change your mind."),
    "Philosophical": ("Ask who carries the cost.", "Prefer choices you could explain openly.",
                      "Separate what is legal from what is right."),
    "Systems": ("Look for delays between action and effect.", "Ask what loop keeps the problem in place.",
                "Expect side effects somewhere else."),
    "Empathic": ("Ask the people affected before deciding for them.", "Acknowledge feelings before solving.",
                 "Listen for what is not said."),
}


def _mixed_lenses(r, lens: dict, names: list[str]) -> list[str]:
    out = []
    for n in names:
        line = r.choice(LENS_FORMS).format(p=n, x=lens[n])
        if r.random() < 0.4:
            line += " " + r.choice(LENS_ADVICE[n])
        out.append(line)
    return out


def gen_mixed(r: random.Random) -> dict:
    if r.random() < 0.35:
        return _mixed_with_tool(r)
    q, lens = r.choice(MIXED_PROBLEMS)
    names = r.sample(PERSPECTIVES, r.choice((2, 3, 3)))
    user = r.choice(MIXED_ASK).format(q=q, ps=_and(names))
    opener = r.choice(("", "Let me look at this from several sides.", "Several perspectives help here.",
                       "I'll take each perspective in turn and then combine them."))
    parts = ([opener] if opener else []) + _mixed_lenses(r, lens, names)
    parts.append(r.choice(INTEGRATIONS).format(a=names[0], b=names[-1]))
    sep = "\n" if r.random() < 0.6 else "\n\n"
    return _example("mixed", [("user", user), ("assistant", sep.join(parts))])


# tool-backed mixed problems: the request names the tool's job clearly.
MIXED_TOOL_ASKS = {
    "analyze_data": ("Analyze the trend in my {c}: {d}. Then look at it from the {ps} perspectives.",
                     "Here are my {c}: {d}. Summarize them and give me the {ps} views."),
    "web_search": ("Search the web for {q}, then reflect on it from the {ps} perspectives.",),
    "execute_python": ("Use Python to compute {e}, then explain the result from the {ps} perspectives.",),
}

MIXED_TOOL_LENSES = {
    "Newton": ("the number itself is the starting point: measure first, then explain the cause",
               "a quantity like this invites the question of what causes it"),
    "Da Vinci": ("a result like this is easier to grasp as a picture, so sketch it",
                 "it is worth asking what in nature behaves the same way"),
    "Quantum": ("a single result carries uncertainty, so more observations would sharpen it",
                "treat the value as an estimate with a spread, not a final truth"),
    "Philosophical": ("we should ask what this result will be used for, and whether that use is fair",
                      "knowing a fact is different from knowing what to do with it"),
    "Systems": ("the value is one snapshot of a system that keeps changing",
                "it is worth asking what feeds back on this value over time"),
    "Empathic": ("behind numbers like these are people, and their experience matters too",
                 "how the result is shared matters as much as the result itself"),
}


def _mixed_with_tool(r) -> dict:
    name = r.choice(sorted(MIXED_TOOL_ASKS))
    names = r.sample(PERSPECTIVES, 2)
    ps = _and(names)
    if name == "analyze_data":
        ctx, data = _random_data(r)
        i = r.randrange(2)
        kind = ("trend", "summary")[i]
        user = MIXED_TOOL_ASKS[name][i].format(c=ctx, d=", ".join(tools.to_json(x) for x in data), ps=ps)
        params = {"data": data, "analysis_type": kind}
    elif name == "web_search":
        q = r.choice(tools.FACTS)[1]
        user = MIXED_TOOL_ASKS[name][0].format(q=q, ps=ps)
        params = {"query": q}
    else:
        e = _py_expr(r)
        user = MIXED_TOOL_ASKS[name][0].format(e=e, ps=ps)
        params = {"code": f"print({e})"}
    params = tools.order_params(name, params)
    call = tools.format_call(name, params)
    result = tools.execute(name, params)
    first = TOOL_MAKERS[name][1](r, params, result)
    lenses = [r.choice(LENS_FORMS).format(p=n, x=r.choice(MIXED_TOOL_LENSES[n])) for n in names]
    integ = r.choice(("Together: trust the result, state its limits, and decide with the people affected in mind.",
                      f"Integrating {ps}: the result answers what, and the perspectives help with what it means.",
                      "Combined, the two views turn a bare result into something you can act on."))
    answer = "\n".join([first] + lenses + [integ])
    turns = [("user", user), ("assistant", call), ("tool", tools.to_json(result)), ("assistant", answer)]
    return _example("mixed", turns, tool=name)


# ---------------------------------------------------------------------------
# generation API

GENERATORS = {"perspectives": gen_perspectives, "tools": gen_tools,
              "consciousness": gen_consciousness, "mixed": gen_mixed}


def _check_mix(mix: dict) -> dict:
    """Validate category weights and normalise them to sum to 1."""
    if not isinstance(mix, dict) or not mix:
        raise DataError("mix must be a non-empty dict of category -> weight")
    out = {c: 0.0 for c in CATEGORIES}
    for cat, w in mix.items():
        if cat not in CATEGORIES:
            raise DataError(f"unknown category {cat!r} in mix; categories are {', '.join(CATEGORIES)}")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise DataError(f"weight for {cat!r} must be a finite number >= 0, got {w!r}")
        out[cat] = float(w)
    total = sum(out.values())
    if total <= 0:
        raise DataError("mix weights sum to 0; give at least one category a positive weight")
    return {c: w / total for c, w in out.items()}


def parse_mix(spec: str) -> dict:
    """"perspectives=0.3,tools=0.25,..." -> weights normalised to sum 1.
    Categories left out get weight 0."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError("empty mix; expected e.g. perspectives=0.3,tools=0.25,consciousness=0.25,mixed=0.2")
    mix = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise DataError(f"mix entry {item!r} is not of the form category=weight")
        cat, _, val = (x.strip() for x in item.partition("="))
        if cat in mix:
            raise DataError(f"category {cat!r} appears twice in the mix")
        try:
            mix[cat] = float(val)
        except ValueError:
            raise DataError(f"weight {val!r} for {cat!r} is not a number") from None
    return _check_mix(mix)


def _counts(n: int, mix: dict) -> dict:
    """Largest-remainder rounding of n * weight per category."""
    raw = {c: n * w for c, w in mix.items()}
    counts = {c: int(math.floor(v)) for c, v in raw.items()}
    rest = n - sum(counts.values())
    for c in sorted(raw, key=lambda c: (counts[c] - raw[c], CATEGORIES.index(c)))[:rest]:
        counts[c] += 1
    return counts


MAX_REDRAWS = 20


def generate(n_samples: int, seed: int = 0, mix: dict | None = None) -> list[dict]:
    """`n_samples` examples mixed by `mix` (default DEFAULT_MIX), deterministic
    per seed, in a shuffled order. An example whose text its category already
    produced is drawn again (up to MAX_REDRAWS times), so texts repeat only
    when a category is asked for more examples than it has combinations."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 0:
        raise DataError(f"n_samples must be an int >= 0, got {n_samples!r}")
    mix = _check_mix(DEFAULT_MIX if mix is None else mix)
    out = []
    for cat, k in _counts(n_samples, mix).items():
        r = random.Random(f"{seed}:{cat}")
        seen = set()
        for _ in range(k):
            for _attempt in range(MAX_REDRAWS + 1):
                ex = GENERATORS[cat](r)
                if ex["text"] not in seen:
                    break
            seen.add(ex["text"])
            out.append(ex)
    random.Random(f"{seed}:order").shuffle(out)
    return out


# ---------------------------------------------------------------------------
# diversity statistics
#
# distinct-n: unique n-grams / all n-grams over whitespace tokens of the
# texts, leaving out the system turn that every generated example shares.
# Skeleton: the text lowercased and split into word and punctuation
# tokens (whitespace dropped); every occurrence of a fill-pool phrase (any
# string of 3+ characters from the pools above and tools.FACTS: topics,
# questions, statements, file lines, names, ...) becomes "§", and every
# run of digits becomes "0". What is left is the template
# structure; the top-skeleton share is the frequency of the most common one.

_TOKEN = re.compile(r"[a-z_]+|[0-9]+|[^\sa-z0-9_]")


def _skel_tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _pool_strings() -> list[str]:
    roots = [OBJECTS, CAUSAL, ANALOGIES, DESIGNS, CREATIVE_TASKS, CREATIVE_MOVES, QUANTUM_CONCEPTS, DILEMMAS,
             SYSTEMS_TOPICS, SITUATIONS, PERSPECTIVES, PERSONA, PROJECTS, TODO_ITEMS, IDEAS, CODE_FILES, CSV_FILES,
             CSV_KEYS, GUIDE_LINES, WRITE_TEXTS, WRITE_PATHS, ABSENT_PATTERNS, PY_WORDS, NO_RESULT_QUERIES,
             UNIT_NAMES, NOTE_TEXTS, OFFLINE_URLS, ANALYSIS_CONTEXTS, tools.FACTS, MIXED_PROBLEMS, SELF_THEMES,
             LENS_ADVICE, MIXED_TOOL_LENSES]
    found, stack = set(), list(roots)
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            found.add(x)
            found.update(line for line in x.split("\n"))
        elif isinstance(x, dict):
            stack += list(x.keys()) + list(x.values())
        elif isinstance(x, (list, tuple, set)):
            stack += list(x)
    return sorted(s for s in found if len(s.strip()) >= 3)


_TRIE: dict | None = None
_LEAF = ""  # key marking the end of a phrase in the trie (tokens are never empty)


def _phrase_trie() -> dict:
    """Token trie of all pool phrases, built once."""
    global _TRIE
    if _TRIE is None:
        trie: dict = {}
        for s in _pool_strings():
            node = trie
            for tok in _skel_tokens(s):
                node = node.setdefault(tok, {})
            node[_LEAF] = True
        _TRIE = trie
    return _TRIE


def skeleton(text: str) -> str:
    """The template structure of `text` (see the comment above): the longest
    pool phrase starting at each position becomes one "§"."""
    trie = _phrase_trie()
    toks = _skel_tokens(text)
    out, i, n = [], 0, len(toks)
    while i < n:
        node, j, hit = trie, i, 0
        while j < n and toks[j] in node:
            node = node[toks[j]]
            j += 1
            if _LEAF in node:
                hit = j - i
        if hit:
            out.append("§")
            i += hit
        else:
            out.append("0" if toks[i][0].isdigit() else toks[i])
            i += 1
    return " ".join(out)


_SYSTEM_TURN = chat.render_turn("system", chat.SYSTEM_PROMPT)


def _distinct(texts: list[str]) -> dict:
    stats = {}
    split = [t.removeprefix(_SYSTEM_TURN).split() for t in texts]
    for n in (1, 2, 3, 4):
        grams = Counter()
        for toks in split:
            grams.update(zip(*(toks[i:] for i in range(n))))
        total = sum(grams.values())
        stats[f"distinct_{n}"] = round(len(grams) / total, 4) if total else 0.0
    return stats


def distinct_ngram_stats(examples: list[dict]) -> dict:
    """Distinct-1..4 and the share of distinct texts, overall and per
    category, plus per category the share of the most frequent skeleton."""
    texts = [e["text"] for e in examples]
    out = {"n": len(texts), "distinct_text_share": round(len(set(texts)) / len(texts), 4) if texts else 0.0}
    out.update(_distinct(texts))
    by_cat = defaultdict(list)
    for e in examples:
        by_cat[e.get("category", "user")].append(e["text"])
    out["per_category"] = {}
    for cat, ts in sorted(by_cat.items()):
        skel = Counter(skeleton(t) for t in ts)
        d = {"n": len(ts), "distinct_text_share": round(len(set(ts)) / len(ts), 4)}
        d.update(_distinct(ts))
        d["skeletons"] = len(skel)
        d["top_skeleton_share"] = round(skel.most_common(1)[0][1] / len(ts), 4)
        out["per_category"][cat] = d
    return out


# ---------------------------------------------------------------------------
# user data


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a .jsonl or .txt file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read file: {e.strerror or e}") from None
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{path}: invalid UTF-8 at byte offset {e.start} (line {line}): "
                        f"byte 0x{raw[e.start]:02x}") from None
    return text.removeprefix("\ufeff")


def load_user_data(paths) -> list[dict]:
    """Examples from user files, in order.

    .jsonl: one JSON object per line with a non-empty string `text` and an
    optional string `category` (default "user"); blank lines are skipped.
    .txt: paragraphs separated by blank lines, each one example ("user").
    Errors (unreadable, empty or non-UTF-8 file, malformed line) raise
    DataError naming the file and the line or byte offset."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = []
    for p in map(Path, paths):
        suffix = p.suffix.lower()
        if suffix not in (".jsonl", ".txt"):
            raise DataError(f"{p}: unsupported file type {suffix or '(none)'!r}; use .jsonl or .txt")
        text = _read_text(p)
        if suffix == ".txt":
            for para in re.split(r"\n(?:[ \t]*\n)+", text.replace("\r\n", "\n")):
                if para.strip():
                    out.append({"category": "user", "text": para.strip("\n")})
            continue
        for lineno, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{p}:{lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{p}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            t = obj.get("text")
            if not isinstance(t, str) or not t:
                raise DataError(f"{p}:{lineno}: missing or empty string field 'text'")
            cat = obj.get("category", "user")
            if not isinstance(cat, str) or not cat:
                raise DataError(f"{p}:{lineno}: 'category' must be a non-empty string")
            out.append({"category": cat, "text": t})
    return out


# ---------------------------------------------------------------------------
# train / validation split


def split_by_example(examples: list[dict], val_fraction: float = 0.05, seed: int = 0):
    """(train, val), disjoint by example, each keeping the input order.

    Per category, at least ceil(val_fraction * n) examples go to validation
    (at least 1 when the category has 2 or more), and train keeps at least
    one. Examples with identical text always land on the same side."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    by_cat = defaultdict(dict)
    for i, e in enumerate(examples):
        by_cat[e.get("category", "user")].setdefault(e["text"], []).append(i)
    val_idx = set()
    for cat, groups in by_cat.items():
        n = sum(len(g) for g in groups.values())
        if n < 2:
            continue
        want = max(1, math.ceil(val_fraction * n))
        order = list(groups.values())
        random.Random(f"{seed}:{cat}").shuffle(order)
        taken = 0
        for g in order:
            if taken >= want:
                break
            if n - taken - len(g) >= 1:
                val_idx.update(g)
                taken += len(g)
    train = [e for i, e in enumerate(examples) if i not in val_idx]
    val = [e for i, e in enumerate(examples) if i in val_idx]
    return train, val


# ---------------------------------------------------------------------------
# command line


def _record(e: dict) -> dict:
    rec = {"category": e["category"], "text": e["text"]}
    if "tool" in e:
        rec["tool"] = e["tool"]
        rec["messages"] = e["messages"]
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m codette_np.data",
        description="Generate the built-in mixed training dataset as JSONL.")
    ap.add_argument("--samples", type=int, default=5000, help="number of examples to generate (default 5000)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output .jsonl path: one object per line with category, text, and for "
                         "tool-call examples also tool and messages (omit to only print stats)")
    ap.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same data (default 0)")
    ap.add_argument("--mix", default=None,
                    help="category weights, e.g. perspectives=0.3,tools=0.25,consciousness=0.25,mixed=0.2 "
                         "(normalised; left-out categories get 0; default is that mix)")
    ap.add_argument("--stats", action="store_true",
                    help="also print diversity statistics: distinct-1..4, distinct-text share, top-skeleton share")
    args = ap.parse_args(argv)
    try:
        if args.samples < 1:
            raise DataError("--samples must be at least 1")
        mix = parse_mix(args.mix) if args.mix is not None else None
        t0 = time.perf_counter()
        examples = generate(args.samples, seed=args.seed, mix=mix)
        elapsed = time.perf_counter() - t0
    except DataError as e:
        ap.error(str(e))
    counts = Counter(e["category"] for e in examples)
    print(f"generated {len(examples)} examples in {elapsed:.2f} s: "
          + ", ".join(f"{c}={counts.get(c, 0)}" for c in CATEGORIES))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            for e in examples:
                f.write(json.dumps(_record(e), ensure_ascii=False) + "\n")
        print(f"wrote {args.out}")
    if args.stats:
        print(json.dumps(distinct_ngram_stats(examples), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
