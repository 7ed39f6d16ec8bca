"""The perspectives category: a question answered in the style of one named perspective
(Newton, Da Vinci, Quantum, Philosophical, Systems, Empathic)."""

from __future__ import annotations

import math
import random

from codette_np.data.common import _cap, _example, _fmt, _pct


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


