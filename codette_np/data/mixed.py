"""The mixed category: one problem seen from two or three perspectives and integrated, some
after a tool call."""

from __future__ import annotations

import random

from codette_np.data import tools
from codette_np.data.common import _and, _example
from codette_np.data.perspectives import PERSPECTIVES
from codette_np.data.tool_use import TOOL_MAKERS, _py_expr, _random_data

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


