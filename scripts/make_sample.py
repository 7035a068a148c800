"""Compose the embedded sample data from hand-written pieces (all text written by the im-data authors).

Run ``python scripts/make_sample.py`` from the repository root. It writes, deterministically:

* ``im_data/assets/sample.jsonl``                 -- instruction-tuning records in chat ``messages`` format
* ``tests/data/sample_alpaca.jsonl``              -- instruction / input / output
* ``tests/data/sample_sharegpt.jsonl``            -- conversations with from / value
* ``tests/data/sample_prompt_completion.jsonl``   -- prompt / completion (plain strings and conversational)

No network, no third-party data: every string below was written for this project.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "im_data" / "assets"

# --------------------------------------------------------------------------------------------------
# System prompts (attached to selected records below by key)
# --------------------------------------------------------------------------------------------------
SYSTEMS = {
    "concise": "You are a concise assistant. Answer in as few words as the question allows.",
    "coder": "You are a careful programming assistant. Prefer short, correct code with a brief explanation.",
    "tutor": "You are a patient maths tutor for secondary-school students. Show each step of your working.",
    "formal": "You are a writing assistant. Use formal British English and avoid contractions.",
    "support": (
        "You are the support assistant for Tidepool Notes, a note-taking app. Be friendly, keep answers "
        "practical, and never promise features that do not exist."
    ),
    "editor": "You are an experienced copy editor. Keep the author's meaning and voice; fix only what is needed.",
    "teacher": "You are a friendly language teacher. Give examples and keep explanations simple.",
    "analyst": "You are a data analyst. Be precise and state any assumptions you make.",
    "chef": "You are a home-cooking assistant. Give quantities in metric units.",
    "classifier": "You label texts. Reply with the label only, followed by a one-sentence justification.",
}

# --------------------------------------------------------------------------------------------------
# Long paragraphs to summarise (100-250 words each), with one-sentence summaries
# --------------------------------------------------------------------------------------------------
SUMMARISE = [
    (
        "Rooftop beekeeping has grown steadily in many cities over the last decade. Supporters argue that "
        "urban hives help pollinate street trees, balcony gardens and small parks, and that city honey often "
        "has a surprisingly complex flavour because the bees forage on a wide mix of ornamental plants. Critics "
        "are less enthusiastic. They point out that honeybees compete with wild bees for the same limited "
        "flowers, and that adding hives without adding flowers can leave both populations hungry. Several "
        "city councils have responded by asking new beekeepers to register their hives and by funding "
        "wildflower strips along roads and railway lines. Beekeeping clubs, for their part, now spend more "
        "time teaching members to inspect for disease and to avoid placing too many colonies in one "
        "neighbourhood. Most observers agree that the hobby can be good for cities, but only when it is "
        "paired with planting and sensible limits on hive density.",
        "Urban beekeeping can benefit cities, but only if new hives are matched by more flowers and limits on "
        "how many colonies share an area.",
    ),
    (
        "The Marlow Street library reopened last month after an eighteen-month renovation. The old building "
        "had leaking skylights, a single narrow staircase and almost no space for group work. The new design "
        "keeps the original brick front but replaces the back half with a glass reading room that faces a "
        "small courtyard garden. A lift now reaches every floor, and the basement, once used only for "
        "storage, has become a maker space with sewing machines, a laser cutter and two 3D printers. "
        "Librarians say the biggest change is the number of teenagers who come in after school; the study "
        "rooms are booked almost every afternoon. Not everyone is pleased. Some long-time visitors miss the "
        "quiet of the old reading room and say the building is now too busy. The library has promised to "
        "mark the top floor as a silent area from next week.",
        "The renovated Marlow Street library is more accessible and popular, especially with teenagers, though "
        "some regulars miss its former quiet.",
    ),
    (
        "Sourdough bread rises without commercial yeast. Instead, bakers keep a starter: a paste of flour and "
        "water in which wild yeasts and lactic acid bacteria live together. The yeasts produce carbon dioxide, "
        "which makes the dough expand, while the bacteria produce acids that give the bread its tangy taste "
        "and help it stay fresh for longer. A starter must be fed regularly with fresh flour and water, "
        "otherwise the microbes run out of food and the mixture turns sour and sluggish. Temperature matters "
        "a great deal. In a warm kitchen a starter may need feeding twice a day, while in the fridge it can "
        "wait a week or more. Because the process is slow, many bakers mix their dough in the evening, let it "
        "rise overnight and bake in the morning, which also gives the flavour more time to develop.",
        "Sourdough rises thanks to a regularly fed starter of wild yeasts and bacteria, whose slow, "
        "temperature-dependent fermentation gives the bread its rise, tang and keeping quality.",
    ),
    (
        "When our team moved from weekly releases to continuous deployment, we expected the main challenge to "
        "be technical. In fact the tooling was ready within a month: every merged change ran through the test "
        "suite, built a container image and rolled out to a small slice of users before reaching everyone. "
        "The harder part was changing habits. Engineers who were used to batching large changes had to learn "
        "to split work into small, independently safe steps, often hiding unfinished features behind flags. "
        "Code review became faster because each change was smaller, but reviewers also had to think more "
        "about how a change would behave if it were rolled back. After six months, the number of incidents "
        "had fallen by about a third, and the average time to fix a bug in production had dropped from days "
        "to hours. Nobody on the team wants to return to the old schedule.",
        "Moving to continuous deployment was mostly a cultural change toward small, flag-protected changes, and "
        "it led to fewer incidents and much faster fixes.",
    ),
    (
        "Researchers who study sleep have long suspected that it plays a role in forming memories. In a typical "
        "experiment, volunteers learn a list of word pairs or a short sequence of finger movements in the "
        "evening and are tested again the next morning. Those who slept normally tend to remember more than "
        "those who were kept awake, even when the tired group is allowed to rest before the test. Recordings "
        "of brain activity suggest that during deep sleep the brain replays patterns of activity seen during "
        "learning, as if rehearsing the day's lessons. Dreaming sleep seems to matter more for emotional "
        "memories and for finding hidden patterns in what was learned. The findings have practical "
        "consequences: students who stay up all night before an exam may be undermining the very studying "
        "they are trying to do.",
        "Sleep, especially deep sleep, appears to help consolidate memories, so giving up sleep to study can "
        "backfire.",
    ),
    (
        "Many popular open-source libraries are maintained by a handful of volunteers. As a project becomes "
        "successful, the number of issues, feature requests and pull requests grows much faster than the "
        "number of people willing to review them. Maintainers describe spending evenings answering questions "
        "that are already covered in the documentation, or triaging bug reports that lack the information "
        "needed to reproduce them. Some projects have responded with stricter issue templates, automated "
        "bots that close stale reports, and clear statements about what kinds of contributions are welcome. "
        "Others have found sponsors or formed foundations that can pay for part-time maintenance. None of "
        "these measures is perfect, but they share a goal: making the work sustainable so that the people "
        "who keep important software running do not simply burn out and walk away.",
        "Popular open-source projects often overload a few volunteer maintainers, who are turning to "
        "templates, automation and funding to keep the work sustainable.",
    ),
    (
        "Tidal power stations generate electricity from the rise and fall of the sea. Unlike wind and solar "
        "power, tides are highly predictable: engineers can calculate the height of the tide at a given place "
        "years in advance. This makes tidal energy attractive for grid operators, who need to balance supply "
        "and demand minute by minute. The technology, however, faces serious obstacles. Suitable sites, with "
        "a large tidal range or fast currents, are rare. Building in seawater is expensive, and equipment "
        "must survive corrosion, storms and the constant push of the water. There are also environmental "
        "concerns, since barrages and underwater turbines can change how sediment moves and may affect fish "
        "and marine mammals. For now tidal power supplies only a tiny share of the world's electricity, but "
        "some coastal regions continue to invest in pilot projects.",
        "Tidal power is attractively predictable but remains niche because suitable sites are rare, "
        "construction is costly and the environmental effects are uncertain.",
    ),
    (
        "The quarterly report for Brightfield Outdoor Supplies shows a mixed picture. Revenue rose eight "
        "percent compared with the same quarter last year, driven mostly by strong sales of lightweight tents "
        "and a new line of insulated water bottles. Online orders now make up just over half of all sales. "
        "Profit, however, fell slightly because shipping costs increased and the company offered larger "
        "discounts to clear last season's winter jackets. The two physical stores that opened in the spring "
        "have not yet reached their targets, although management says foot traffic is improving. Looking "
        "ahead, the company plans to renegotiate its delivery contracts, reduce the number of jacket styles "
        "it carries, and test a repair service for damaged gear, which it hopes will build customer loyalty.",
        "Brightfield's revenue grew on tent and bottle sales, but higher shipping costs and discounting cut "
        "profit, so the company plans to trim costs and try a repair service.",
    ),
    (
        "Community gardens turn vacant lots, school grounds and corners of parks into shared growing space. "
        "Each member usually tends a small plot and helps with common tasks such as composting, watering and "
        "repairing fences. Beyond the vegetables, organisers stress the social side. Neighbours who might "
        "never have spoken meet while weeding, swap seeds and recipes, and keep an eye on each other's plots "
        "during holidays. Older residents often pass on skills to children, and some gardens run workshops on "
        "pruning or seed saving. The gardens also face problems: waiting lists can be long, water can be "
        "expensive, and land is sometimes reclaimed for building once its value rises. Groups that secure a "
        "long lease and a reliable water supply tend to last the longest and have the most active members.",
        "Community gardens provide food and strong social ties, but they depend on secure land and water to "
        "survive.",
    ),
    (
        "Glaciers in many mountain ranges are shrinking. Photographs taken a century ago show valleys filled "
        "with ice that is now gone, replaced by bare rock and new lakes. For people living downstream, the "
        "change is not only visual. Glaciers act like water towers, storing winter snow as ice and releasing "
        "it slowly during the dry summer months, when rivers would otherwise run low. As a glacier retreats, "
        "summer melt can at first increase, giving the false impression of plenty. Once the ice mass becomes "
        "small enough, however, the summer flow begins to fall, affecting farms, towns and hydroelectric "
        "dams. Scientists therefore monitor glaciers closely, measuring their thickness and length each year, "
        "so that communities have time to plan new reservoirs and to use water more efficiently.",
        "Shrinking glaciers first boost and then reduce summer river flow, so scientists monitor them to help "
        "downstream communities plan for water shortages.",
    ),
    (
        "Working from home changed daily routines for millions of office workers. Without a commute, many "
        "people gained an hour or more each day, which some spent exercising, cooking or simply sleeping "
        "longer. Surveys suggest that most remote workers value this flexibility highly. At the same time, "
        "managers report that informal learning suffers: junior staff no longer overhear how experienced "
        "colleagues handle difficult calls or solve problems. Some employees also find it harder to switch "
        "off when the kitchen table doubles as a desk. As a result, many organisations have settled on a "
        "hybrid pattern, asking teams to meet in the office on two or three fixed days each week and keeping "
        "the remaining days for focused individual work at home.",
        "Remote work saves commuting time but weakens informal learning and work-life boundaries, so many "
        "employers have adopted hybrid schedules.",
    ),
    (
        "The village of Åsgård-by-the-Lake held its first winter light festival this year. Volunteers spent "
        "weeks building lanterns from recycled jars, wire and coloured paper, and local schoolchildren painted "
        "a long row of wooden boards that were lit from behind along the lakeside path. On the opening night "
        "more than two thousand visitors came, far more than the organisers had expected, and the single road "
        "into the village was blocked for almost an hour. The café ran out of hot chocolate by eight o'clock. "
        "Despite the crowds, feedback was overwhelmingly positive, and several shops reported their busiest "
        "evening of the year. For next year the committee plans a shuttle bus from the railway station, more "
        "food stalls and a second weekend so that visitors are spread out more evenly.",
        "Åsgård-by-the-Lake's first winter light festival was a crowded success, and organisers plan better "
        "transport and a longer run next year.",
    ),
]

# --------------------------------------------------------------------------------------------------
# Long texts to classify (instruction + paragraph, short label answer)
# --------------------------------------------------------------------------------------------------
CLASSIFY = [
    (
        "Classify the sentiment of this product review as positive, negative or mixed.",
        "I bought the Kestrel 2 blender after my old one finally gave up. The motor is powerful and it crushes "
        "ice in seconds, which is exactly what I wanted for smoothies. Cleaning is easy because the blade "
        "assembly comes out in one piece. My complaints are the noise, which is loud enough to wake the whole "
        "flat in the morning, and the lid, which has already cracked slightly after three weeks. Customer "
        "service promised to send a replacement, but it has not arrived yet. I would probably buy it again, "
        "but I would not recommend it to anyone living with light sleepers.",
        "Mixed. The reviewer praises the power and easy cleaning but complains about the noise and a cracked lid.",
    ),
    (
        "Which department should handle this support ticket: Billing, Technical, or Account Access?",
        "Hello, I have been trying to log in to my account since yesterday evening. Every time I enter my "
        "password the page says that the code sent to my phone has expired, but I never receive any code at "
        "all. I changed phones last month and I think the account may still be linked to my old number. I "
        "have already tried resetting my password twice. I need to download my invoices before Friday for my "
        "accountant, so I would really appreciate a quick answer. Thank you.",
        "Account Access. The customer cannot log in because two-factor codes go to an old phone number.",
    ),
    (
        "Is the following news excerpt about sports, politics, science, or business?",
        "The regional council voted on Tuesday to delay the new transport budget by three months after "
        "members failed to agree on how to divide funding between bus routes and road repairs. The leader of "
        "the largest group said the delay would allow time for public consultation, while opposition members "
        "accused the council of avoiding a difficult decision before next spring's elections. A final vote "
        "is now expected in late March, and several local campaign groups have already announced meetings "
        "to present their proposals.",
        "Politics. The excerpt covers a council budget vote and disagreements between political groups.",
    ),
    (
        "Classify the sentiment of this review as positive, negative or mixed.",
        "We stayed at the Harbour View guesthouse for four nights and loved every minute. The room was "
        "spotless, the bed was comfortable, and the window really did look straight onto the fishing boats. "
        "Breakfast was the highlight: fresh bread, local cheese and the best scrambled eggs I have had in "
        "years. The owners recommended a coastal walk that turned out to be the best day of our trip. "
        "Parking is a little tight, but that is hardly their fault in such an old street. We are already "
        "planning to return next summer.",
        "Positive. The guest praises the room, breakfast and hosts and plans to return.",
    ),
    (
        "Label this email as 'spam' or 'not spam'.",
        "Dear valued customer, your parcel could not be delivered because of an unpaid customs fee of 1.99. "
        "To avoid the return of your package to the sender, please confirm your card details within 24 hours "
        "by clicking the secure link below. If you do not act now, your parcel will be destroyed and further "
        "charges may apply. This is an automated message; please do not reply.",
        "Spam. It uses urgency and a small fee to trick the reader into entering card details.",
    ),
    (
        "Is this paragraph mainly about history, cooking, technology, or travel?",
        "Before the arrival of refrigerators, households relied on a variety of methods to keep food from "
        "spoiling. Meat and fish were salted, smoked or dried, while vegetables were pickled in vinegar or "
        "stored in cool cellars packed with sand. In colder regions, blocks of ice were cut from frozen lakes "
        "during winter and stored in insulated ice houses, where they could last well into the summer. "
        "Ice merchants later delivered blocks door to door for use in wooden ice boxes. These techniques "
        "shaped regional cuisines that still exist today.",
        "History. It describes how food was preserved before refrigeration and how that shaped cuisine.",
    ),
    (
        "Decide whether this job advert is for an entry-level, mid-level or senior role.",
        "Northgate Analytics is looking for a data engineer to lead the redesign of our data platform. You "
        "will set the technical direction for a team of six engineers, choose between build and buy for our "
        "ingestion and storage layers, and work with product leaders to plan the roadmap for the next two "
        "years. We expect at least eight years of experience building production data pipelines, a track "
        "record of mentoring other engineers, and confidence presenting trade-offs to non-technical "
        "executives. Experience with streaming systems and with running infrastructure on more than one "
        "cloud provider is a strong advantage. The role is hybrid, with two office days each week in our "
        "Leeds office, and includes a budget for conferences and training. We welcome applications from "
        "people of all backgrounds and are happy to discuss flexible or part-time arrangements.",
        "Senior. The role leads a team, sets technical direction and asks for eight or more years of "
        "experience.",
    ),
]

# --------------------------------------------------------------------------------------------------
# Coding questions (user, assistant) -- code blocks with indentation
# --------------------------------------------------------------------------------------------------
CODING = [
    (
        "Write a Python function that returns the n-th Fibonacci number without recursion.",
        "Here is an iterative version that runs in linear time and constant memory:\n\n"
        "```python\n"
        "def fibonacci(n: int) -> int:\n"
        "    \"\"\"Return the n-th Fibonacci number, with fibonacci(0) == 0.\"\"\"\n"
        "    if n < 0:\n"
        "        raise ValueError(\"n must be non-negative\")\n"
        "    a, b = 0, 1\n"
        "    for _ in range(n):\n"
        "        a, b = b, a + b\n"
        "    return a\n"
        "```\n\n"
        "For example, `fibonacci(10)` returns `55`.",
    ),
    (
        "How do I read a file line by line in Python and skip blank lines?",
        "Open the file with a `with` block and test each stripped line:\n\n"
        "```python\n"
        "with open(\"notes.txt\", encoding=\"utf-8\") as handle:\n"
        "    for line in handle:\n"
        "        line = line.rstrip(\"\\n\")\n"
        "        if not line.strip():\n"
        "            continue\n"
        "        print(line)\n"
        "```\n\n"
        "The `with` block closes the file for you, even if an error happens inside the loop.",
    ),
    (
        "What is the difference between a list and a tuple in Python?",
        "Both are ordered sequences, but a list is mutable and a tuple is immutable. You can append to, remove "
        "from or change the items of a list after creating it; a tuple stays the same once built. Because "
        "tuples cannot change, they can be used as dictionary keys (if their items are hashable), and they "
        "signal to readers that the collection is a fixed record, such as a pair of coordinates:\n\n"
        "```python\n"
        "point = (3, 4)          # tuple: fixed pair\n"
        "queue = [\"a\", \"b\"]     # list: will grow and shrink\n"
        "queue.append(\"c\")\n"
        "```",
    ),
    (
        "Write a SQL query that lists the five customers who spent the most in 2023, using tables customers(id, "
        "name) and orders(id, customer_id, total, created_at).",
        "```sql\n"
        "SELECT c.id,\n"
        "       c.name,\n"
        "       SUM(o.total) AS spent\n"
        "FROM customers AS c\n"
        "JOIN orders AS o ON o.customer_id = c.id\n"
        "WHERE o.created_at >= DATE '2023-01-01'\n"
        "  AND o.created_at <  DATE '2024-01-01'\n"
        "GROUP BY c.id, c.name\n"
        "ORDER BY spent DESC\n"
        "LIMIT 5;\n"
        "```\n\n"
        "Using a half-open date range keeps orders placed late on 31 December.",
    ),
    (
        "My JavaScript function returns undefined instead of the sum. What is wrong?\n\n"
        "```javascript\n"
        "function total(items) {\n"
        "  items.reduce((acc, item) => {\n"
        "    return acc + item.price;\n"
        "  }, 0);\n"
        "}\n"
        "```",
        "The function never returns the result of `reduce`. Add `return` in front of the call:\n\n"
        "```javascript\n"
        "function total(items) {\n"
        "  return items.reduce((acc, item) => acc + item.price, 0);\n"
        "}\n"
        "```",
    ),
    (
        "Write a bash one-liner that counts the lines in every .py file under the current directory.",
        "```bash\n"
        "find . -name '*.py' -print0 | xargs -0 wc -l\n"
        "```\n\n"
        "`-print0` and `-0` keep file names with spaces intact; the last line of the output is the total.",
    ),
    (
        "Explain what a Python dictionary comprehension is, with an example.",
        "A dictionary comprehension builds a dictionary from an iterable in a single expression, the same way "
        "a list comprehension builds a list. The syntax is `{key: value for item in iterable if condition}`.\n\n"
        "```python\n"
        "words = [\"apple\", \"kiwi\", \"banana\", \"fig\"]\n"
        "lengths = {word: len(word) for word in words if len(word) > 3}\n"
        "print(lengths)  # {'apple': 5, 'kiwi': 4, 'banana': 6}\n"
        "```\n\n"
        "It is shorter than an explicit loop and makes the intent obvious, but for complex logic a normal "
        "`for` loop is often easier to read.",
    ),
    (
        "Write a small Python class for a stack with push, pop and peek.",
        "```python\n"
        "class Stack:\n"
        "    def __init__(self):\n"
        "        self._items = []\n"
        "\n"
        "    def push(self, item):\n"
        "        self._items.append(item)\n"
        "\n"
        "    def pop(self):\n"
        "        if not self._items:\n"
        "            raise IndexError(\"pop from empty stack\")\n"
        "        return self._items.pop()\n"
        "\n"
        "    def peek(self):\n"
        "        if not self._items:\n"
        "            raise IndexError(\"peek at empty stack\")\n"
        "        return self._items[-1]\n"
        "\n"
        "    def __len__(self):\n"
        "        return len(self._items)\n"
        "```\n\n"
        "A Python list already gives amortised O(1) appends and pops at the end, so it is a good backing store.",
    ),
    (
        "How can I reverse a string in Python?",
        "Use slicing with a step of -1: `\"hello\"[::-1]` gives `\"olleh\"`.",
    ),
    (
        "Write a Python function that checks whether a string is a palindrome, ignoring case, spaces and "
        "punctuation.",
        "```python\n"
        "def is_palindrome(text: str) -> bool:\n"
        "    cleaned = [ch.lower() for ch in text if ch.isalnum()]\n"
        "    return cleaned == cleaned[::-1]\n"
        "\n"
        "\n"
        "assert is_palindrome(\"A man, a plan, a canal: Panama\")\n"
        "assert not is_palindrome(\"Hello, world\")\n"
        "```\n\n"
        "`str.isalnum()` keeps letters and digits, including accented letters such as `é`.",
    ),
    (
        "How do I count how often each word appears in a text with Python?",
        "`collections.Counter` does the counting for you:\n\n"
        "```python\n"
        "from collections import Counter\n"
        "\n"
        "text = \"the cat sat on the mat and the dog sat too\"\n"
        "counts = Counter(text.lower().split())\n"
        "for word, n in counts.most_common(3):\n"
        "    print(f\"{word:>5} {n}\")\n"
        "```\n\n"
        "This prints `the 3`, `sat 2` and `cat 1`. For real text, strip punctuation before splitting.",
    ),
    (
        "Write a Python function that merges two sorted lists into one sorted list.",
        "```python\n"
        "def merge_sorted(left: list, right: list) -> list:\n"
        "    result = []\n"
        "    i = j = 0\n"
        "    while i < len(left) and j < len(right):\n"
        "        if left[i] <= right[j]:\n"
        "            result.append(left[i])\n"
        "            i += 1\n"
        "        else:\n"
        "            result.append(right[j])\n"
        "            j += 1\n"
        "    result.extend(left[i:])\n"
        "    result.extend(right[j:])\n"
        "    return result\n"
        "```\n\n"
        "It runs in O(len(left) + len(right)) time, and using `<=` keeps the merge stable.",
    ),
]

# --------------------------------------------------------------------------------------------------
# Maths word problems (user, assistant)
# --------------------------------------------------------------------------------------------------
MATH = [
    (
        "A bakery sells muffins for $2.50 each and cookies for $1.25 each. Maria buys 4 muffins and 6 "
        "cookies. How much does she pay?",
        "Muffins: 4 × $2.50 = $10.00. Cookies: 6 × $1.25 = $7.50. Total: $10.00 + $7.50 = $17.50.",
    ),
    (
        "A train travels 180 km in 2.5 hours. At the same average speed, how long will it take to travel "
        "252 km?",
        "Average speed = 180 km ÷ 2.5 h = 72 km/h.\nTime for 252 km = 252 ÷ 72 = 3.5 hours, i.e. 3 hours 30 "
        "minutes.",
    ),
    (
        "A rectangular garden is 12 m long and 7 m wide. A fence will go all the way round except for a gate "
        "that is 1.5 m wide. How many metres of fencing are needed?",
        "Perimeter = 2 × (12 + 7) = 38 m. Subtract the gate: 38 − 1.5 = 36.5 m of fencing.",
    ),
    (
        "A shirt costs $40. It is discounted by 25%, and then 8% sales tax is added to the discounted price. "
        "What is the final price?",
        "Discount: 25% of $40 = $10, so the sale price is $30.\nTax: 8% of $30 = $2.40.\nFinal price: $30 + "
        "$2.40 = $32.40.",
    ),
    (
        "Three friends share a restaurant bill of $84.60 and add a 15% tip. If they split the total evenly, "
        "how much does each person pay?",
        "Tip: 0.15 × 84.60 = $12.69. Total: 84.60 + 12.69 = $97.29. Each person pays 97.29 ÷ 3 = $32.43.",
    ),
    (
        "A 500-litre tank is filled by a pipe at 20 litres per minute, but it also leaks 5 litres per minute. "
        "Starting empty, how long does it take to fill?",
        "The tank gains 20 − 5 = 15 litres each minute. Time = 500 ÷ 15 = 33⅓ minutes, which is 33 minutes "
        "and 20 seconds.",
    ),
    (
        "Priya's first four test scores are 78, 85, 92 and 88. What score does she need on the fifth test to "
        "have an average of exactly 86?",
        "For an average of 86 over five tests she needs 5 × 86 = 430 points in total. Her current total is "
        "78 + 85 + 92 + 88 = 343. She needs 430 − 343 = 87 on the fifth test.",
    ),
    (
        "Sam reads 15 pages on the first day and each day reads 5 pages more than the day before. How many "
        "pages has he read after 6 days?",
        "Daily pages: 15, 20, 25, 30, 35, 40. Sum = 165 pages. (Arithmetic series: 6 × (15 + 40) ÷ 2 = 165.)",
    ),
]

# --------------------------------------------------------------------------------------------------
# Rewriting tasks (user, assistant)
# --------------------------------------------------------------------------------------------------
REWRITE = [
    (
        "Rewrite this sentence to be more formal: \"Hey, can you send me the report asap? Thanks!\"",
        "Could you please send me the report at your earliest convenience? Thank you.",
    ),
    (
        "Make this paragraph shorter without losing the key facts: \"Our team meeting, which was originally "
        "planned to take place on Monday at 10 in the morning in the large conference room on the third "
        "floor, has now been moved, due to a scheduling conflict with the quarterly review, to Tuesday at the "
        "same time and in the same room.\"",
        "Monday's 10 a.m. team meeting in the third-floor conference room has moved to Tuesday at the same "
        "time and place because of a clash with the quarterly review.",
    ),
    (
        "Rewrite in the passive voice: \"The committee approved the new budget on Friday.\"",
        "The new budget was approved by the committee on Friday.",
    ),
    (
        "Turn these notes into a polite email: meeting thurs 3pm, bring laptop, room 204, agenda = launch "
        "plan + budget",
        "Subject: Meeting on Thursday at 3 p.m.\n\nHello everyone,\n\nThis is a reminder that we will meet on "
        "Thursday at 3 p.m. in room 204. We will discuss the launch plan and the budget, so please bring your "
        "laptop.\n\nBest regards,",
    ),
    (
        "Rewrite this for a five-year-old: \"Photosynthesis is the process by which plants convert light "
        "energy into chemical energy stored in glucose.\"",
        "Plants use sunlight to make their own food, a bit like cooking a meal with light instead of an oven.",
    ),
    (
        "Fix the grammar: \"Me and him goes to the library every tuesdays, but the last week it were closed.\"",
        "He and I go to the library every Tuesday, but last week it was closed.",
    ),
    (
        "Rewrite this product description so it sounds more exciting: \"This is a backpack. It has two "
        "pockets and is waterproof.\"",
        "Meet the backpack that is ready for anything: two roomy pockets keep your gear organised, and the "
        "fully waterproof shell keeps it dry whatever the sky decides to do.",
    ),
    (
        "Translate this sentence into French and Spanish: \"The library opens at nine o'clock.\"",
        "French: « La bibliothèque ouvre à neuf heures. »\nSpanish: «La biblioteca abre a las nueve.»",
    ),
]

# --------------------------------------------------------------------------------------------------
# Short factual Q&A (user, assistant)
# --------------------------------------------------------------------------------------------------
FACTS = [
    ("What is the boiling point of water at sea level in degrees Celsius?", "100 °C."),
    ("How many continents are there?", "Seven, by the most common convention: Africa, Antarctica, Asia, "
     "Australia (Oceania), Europe, North America and South America."),
    ("What gas do plants absorb from the air for photosynthesis?", "Carbon dioxide (CO₂)."),
    ("Who wrote the play Romeo and Juliet?", "William Shakespeare."),
    ("What is the largest planet in our solar system?", "Jupiter."),
    ("How many sides does a hexagon have?", "Six."),
    ("What does CPU stand for?", "Central processing unit."),
    ("What is the capital of Japan?", "Tokyo (東京)."),
    ("What is the chemical symbol for gold?", "Au, from the Latin word aurum."),
    ("How many minutes are there in a day?", "1,440 minutes (24 × 60)."),
    ("What is the freezing point of water in Fahrenheit?", "32 °F."),
    ("Which ocean is the largest?", "The Pacific Ocean."),
    ("What is the square root of 144?", "12."),
]

# --------------------------------------------------------------------------------------------------
# Brainstorming and explanations: short questions, long answers
# --------------------------------------------------------------------------------------------------
LONG_ANSWERS = [
    (
        "Give me ideas for a rainy Saturday with two children aged 6 and 9.",
        "Here are some ideas that need little preparation:\n\n"
        "1. Build a blanket fort in the living room and hold a torch-lit story time inside it.\n"
        "2. Run an indoor treasure hunt with rhyming clues hidden around the house.\n"
        "3. Bake something simple, such as biscuits, and let the children decorate them.\n"
        "4. Set up a cardboard-box workshop: cars, castles or a puppet theatre from old boxes and tape.\n"
        "5. Hold a science morning: make a baking-soda volcano, grow salt crystals or test which objects float.\n"
        "6. Put on a talent show, with tickets, a stage made of cushions and a programme they design.\n"
        "7. Visit a library or museum if you can get there dry; many have free activities on weekends.\n"
        "8. End the day with a film night and home-made popcorn.\n\n"
        "Mixing one active idea with one calm one usually keeps both ages happy.",
    ),
    (
        "What are some names for a small coffee shop near a university?",
        "A few options in different styles:\n\n"
        "- **The Study Break** – friendly and obvious about its audience.\n"
        "- **Footnote Coffee** – a quiet academic joke.\n"
        "- **Second Draft** – for anyone rewriting an essay at midnight.\n"
        "- **Bean & Bookmark** – cosy, suggests reading corners.\n"
        "- **Office Hours** – playful, and it doubles as a slogan (\"We keep office hours\").\n"
        "- **The Grind** – short, memorable, though fairly common.\n"
        "- **Lecture Notes Café** – clear, slightly formal.\n\n"
        "Before choosing, check that the name is not already used locally and that a matching web address "
        "and social-media handle are free.",
    ),
    (
        "Why is the sky blue?",
        "Sunlight contains all the colours of visible light. When it enters the atmosphere it meets gas "
        "molecules that are much smaller than the wavelength of the light. These molecules scatter short "
        "wavelengths, such as blue and violet, far more strongly than long wavelengths such as red; the effect "
        "is called Rayleigh scattering. As a result, blue light is bounced around the sky in every direction, "
        "and wherever you look away from the Sun you see some of this scattered blue light.\n\n"
        "Violet is scattered even more than blue, but sunlight contains less violet, some of it is absorbed "
        "high in the atmosphere, and our eyes are less sensitive to it, so the sky looks blue rather than "
        "purple. At sunrise and sunset, light travels through much more air to reach you; most of the blue "
        "is scattered away along the path, leaving the reds and oranges.",
    ),
    (
        "How do I start learning to run if I have never exercised?",
        "Start gently and build consistency before speed or distance.\n\n"
        "**Weeks 1–2:** Three sessions a week of 20–25 minutes. Alternate 1 minute of easy jogging with "
        "2 minutes of brisk walking. You should be able to talk in short sentences while jogging.\n\n"
        "**Weeks 3–4:** Move to 2 minutes of jogging and 1–2 minutes of walking.\n\n"
        "**Weeks 5–8:** Gradually lengthen the jogging parts until you can run for 20–30 minutes without "
        "stopping.\n\n"
        "Some general tips:\n"
        "- Rest at least one day between sessions so your joints and muscles can adapt.\n"
        "- Wear comfortable shoes that fit well; you do not need expensive gear to begin.\n"
        "- If something hurts sharply, stop and rest rather than pushing through.\n"
        "- Repeat a week if it felt too hard; progress is not a race.\n\n"
        "If you have a heart condition or other health concerns, check with a doctor before you begin.",
    ),
    (
        "What should I consider when choosing a name for a variable?",
        "Good variable names make code read like a description of what it does. Some guidelines:\n\n"
        "- **Say what it holds, not how it is stored.** `unpaid_invoices` is better than `invoice_list`.\n"
        "- **Match the scope.** A loop index used for two lines can be `i`; a value used across a module "
        "deserves a full name.\n"
        "- **Include units when they matter:** `timeout_seconds`, `distance_km`.\n"
        "- **Name booleans as questions:** `is_ready`, `has_children`, `should_retry`.\n"
        "- **Avoid near-duplicates** such as `data`, `data2` and `the_data` in the same function.\n"
        "- **Follow the language's conventions**: `snake_case` in Python, `camelCase` in JavaScript.\n\n"
        "If you struggle to name something, that is often a sign the code is doing too many things at once.",
    ),
    (
        "List some ways a small team can make meetings shorter.",
        "- Share a written agenda at least a day in advance, with the decision each item needs.\n"
        "- Start on time, even if someone is late, and end early when the agenda is done.\n"
        "- Replace status updates with a short written summary that people read beforehand.\n"
        "- Invite only people who need to decide or contribute; send notes to everyone else.\n"
        "- Use a visible timer for each item.\n"
        "- Park long side discussions in a follow-up with only the people involved.\n"
        "- Finish by reading out decisions, owners and deadlines, then write them down where everyone can "
        "see them.",
    ),
    (
        "What is the difference between weather and climate?",
        "Weather is the state of the atmosphere at a particular place and time: today's temperature, the "
        "rain this afternoon, the wind tonight. It changes from hour to hour and day to day.\n\n"
        "Climate is the pattern of weather over a long period, usually thirty years or more. It describes "
        "what is typical for a region, such as how warm its summers usually are, how much rain falls in an "
        "average year and how often storms occur.\n\n"
        "A simple way to remember the difference: weather tells you what to wear today, while climate tells "
        "you what kind of clothes to keep in your wardrobe.",
    ),
    (
        "Brainstorm gift ideas for a friend who loves hiking.",
        "- A lightweight head torch for early starts and late finishes.\n"
        "- Merino wool hiking socks; few hikers have too many good pairs.\n"
        "- A detailed paper map of a region they have not explored yet.\n"
        "- A compact first-aid kit, topped up with blister plasters.\n"
        "- An insulated flask for hot drinks at the summit ☕.\n"
        "- A guidebook to local wildflowers, birds or geology.\n"
        "- A voucher for a guided walk, a navigation course or a night in a mountain hut.\n"
        "- A day out together: you plan the route, pack the lunch and drive.\n\n"
        "If you are unsure about sizes or brands, consumables and experiences are the safest choices.",
    ),
]

# --------------------------------------------------------------------------------------------------
# Multi-turn conversations: list of (user, assistant) exchanges
# --------------------------------------------------------------------------------------------------
MULTI_TURN = [
    [
        ("I have a pancake recipe for 4 people that uses 200 g flour, 2 eggs and 300 ml milk. How much do I "
         "need for 6 people?",
         "Multiply everything by 6 ÷ 4 = 1.5: 300 g flour, 3 eggs and 450 ml milk."),
        ("And for 2 people?",
         "Halve the original: 100 g flour, 1 egg and 150 ml milk."),
    ],
    [
        ("What does this Python error mean? TypeError: can only concatenate str (not \"int\") to str",
         "You tried to join a string and an integer with `+`, for example `\"Age: \" + 30`. Python will not "
         "convert the number for you."),
        ("How do I fix it?",
         "Convert the number explicitly or use an f-string:\n\n```python\nage = 30\nprint(\"Age: \" + "
         "str(age))\nprint(f\"Age: {age}\")\n```"),
        ("Which one is better?",
         "The f-string is usually preferred: it is shorter, easier to read and handles several values at "
         "once, such as `f\"{name} is {age}\"`."),
    ],
    [
        ("How do you say 'thank you' in Japanese?",
         "The most common way is ありがとう (arigatō). A more polite form is ありがとうございます "
         "(arigatō gozaimasu)."),
        ("And 'good morning'?",
         "おはよう (ohayō) with friends, or おはようございます (ohayō gozaimasu) in polite situations."),
    ],
    [
        ("Can you explain recursion in one or two sentences?",
         "Recursion is when a function solves a problem by calling itself on a smaller version of the same "
         "problem, until it reaches a case simple enough to answer directly."),
        ("Show me a tiny example.",
         "```python\ndef countdown(n):\n    if n == 0:\n        print(\"Lift-off!\")\n        return\n    "
         "print(n)\n    countdown(n - 1)\n```\n\n`countdown(3)` prints 3, 2, 1 and then Lift-off!"),
        ("What happens if I forget the n == 0 check?",
         "The function keeps calling itself with -1, -2 and so on until Python stops it with a "
         "`RecursionError` because the call stack has grown too deep."),
    ],
    [
        ("I'm planning a weekend in Lisbon. What area should I stay in?",
         "For a first visit, Baixa or Chiado are central and walkable, with easy access to trams and the "
         "river. Alfama is more atmospheric but hilly, and Príncipe Real is quieter with good cafés."),
        ("I don't like hills much.",
         "Then choose Baixa: it sits on flat ground between the hills, and you can take the tram or the "
         "Santa Justa lift when you want to go up."),
    ],
    [
        ("Write a SQL query that counts orders per day from a table orders(id, created_at).",
         "```sql\nSELECT DATE(created_at) AS day, COUNT(*) AS orders\nFROM orders\nGROUP BY DATE(created_at)\n"
         "ORDER BY day;\n```"),
        ("Now only show days with more than 100 orders.",
         "Add a `HAVING` clause after the grouping:\n\n```sql\nSELECT DATE(created_at) AS day, COUNT(*) AS "
         "orders\nFROM orders\nGROUP BY DATE(created_at)\nHAVING COUNT(*) > 100\nORDER BY day;\n```"),
    ],
    [
        ("Draft a short message telling my team that the office will be closed on Friday.",
         "Hi all, a quick note that the office will be closed this Friday. Please plan to work from home "
         "that day, and let me know if this causes any problems. Thanks!"),
        ("Make it even shorter.",
         "Hi all, the office is closed on Friday, so please work from home. Thanks!"),
    ],
    [
        ("What is the French word 'déjà vu' literally?",
         "It literally means \"already seen\"."),
        ("Are there other French phrases used in English like that?",
         "Yes, for example: café, naïve, résumé, fiancé, rendez-vous, à la carte and crème brûlée."),
        ("Which one do English speakers most often spell without accents?",
         "Probably \"resume\" for résumé and \"naive\" for naïve; both accent-free spellings are widely "
         "accepted in English."),
    ],
    [
        ("I'm choosing a houseplant for a dark bathroom. Any suggestions?",
         "Good low-light options include the ZZ plant, pothos, snake plant and some ferns. Bathrooms are "
         "humid, which ferns and pothos especially enjoy."),
        ("Which one is hardest to kill? 🌱",
         "The ZZ plant. It tolerates low light, irregular watering and neglect; the main risk is watering it "
         "too often."),
    ],
    [
        ("If I save $150 a month, how long until I have $2,000?",
         "2,000 ÷ 150 ≈ 13.3, so you need 14 months (after 13 months you would have $1,950)."),
        ("What if I increase it to $200 a month after the first 6 months?",
         "After 6 months you have 6 × 150 = $900. You still need $1,100, and 1,100 ÷ 200 = 5.5, so 6 more "
         "months. That makes 12 months in total, ending with $2,100."),
    ],
]

# --------------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------------
SUMMARISE_PROMPTS = [
    "Summarise the following paragraph in one sentence.",
    "Give a one-sentence summary of this text:",
    "Read the paragraph below and summarise its main point in a single sentence.",
    "TL;DR this for me in one sentence, please.",
]

# which records get a system message: (section, index) -> system key
SYSTEM_FOR = {
    ("summarise", 3): "formal",
    ("classify", 0): "classifier",
    ("classify", 4): "classifier",
    ("coding", 0): "coder",
    ("coding", 3): "coder",
    ("math", 1): "tutor",
    ("math", 6): "tutor",
    ("facts", 2): "concise",
    ("rewrite", 1): "editor",
    ("long", 4): "analyst",
    ("multi", 0): "chef",
    ("multi", 2): "teacher",
}

EXTRA_SYSTEM_RECORDS = [
    (
        "support",
        "How do I export all my notes as plain text?",
        "Open **Settings → Export**, choose **Plain text (.txt)**, and tap **Export all**. Tidepool Notes "
        "creates one file per note and bundles them into a single .zip archive that you can save or share.",
    ),
    (
        "support",
        "Can I lock a single notebook with a password?",
        "Not at the moment: Tidepool Notes can lock the whole app with a PIN or your device's fingerprint or "
        "face unlock (Settings → Privacy), but it cannot lock individual notebooks.",
    ),
]


def _msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def _with_system(section: str, index: int, messages: list[dict]) -> list[dict]:
    key = SYSTEM_FOR.get((section, index))
    return ([_msg("system", SYSTEMS[key])] if key else []) + messages


def build_records() -> list[list[dict]]:
    """Return conversations in a deterministic, interleaved order (so any prefix is varied)."""
    sections: dict[str, list[list[dict]]] = {}
    sections["summarise"] = [
        _with_system("summarise", i, [
            _msg("user", f"{SUMMARISE_PROMPTS[i % len(SUMMARISE_PROMPTS)]}\n\n{para}"),
            _msg("assistant", summary),
        ])
        for i, (para, summary) in enumerate(SUMMARISE)
    ]
    sections["classify"] = [
        _with_system("classify", i, [_msg("user", f"{instr}\n\n{text}"), _msg("assistant", answer)])
        for i, (instr, text, answer) in enumerate(CLASSIFY)
    ]
    for name, pairs in (("coding", CODING), ("math", MATH), ("rewrite", REWRITE), ("facts", FACTS),
                        ("long", LONG_ANSWERS)):
        sections[name] = [
            _with_system(name, i, [_msg("user", q), _msg("assistant", a)]) for i, (q, a) in enumerate(pairs)
        ]
    sections["multi"] = [
        _with_system("multi", i, [m for u, a in conv for m in (_msg("user", u), _msg("assistant", a))])
        for i, conv in enumerate(MULTI_TURN)
    ]
    sections["support"] = [
        [_msg("system", SYSTEMS[key]), _msg("user", q), _msg("assistant", a)]
        for key, q, a in EXTRA_SYSTEM_RECORDS
    ]
    # round-robin interleave of the sections, in a fixed order
    order = ["summarise", "coding", "facts", "math", "multi", "rewrite", "classify", "long", "support"]
    out: list[list[dict]] = []
    depth = max(len(v) for v in sections.values())
    for i in range(depth):
        for name in order:
            if i < len(sections[name]):
                out.append(sections[name][i])
    return out


def validate(messages: list[dict]) -> None:
    assert messages, "empty conversation"
    roles = [m["role"] for m in messages]
    assert all(r in ("system", "user", "assistant") for r in roles), roles
    assert roles[-1] == "assistant", roles
    assert "user" in roles, roles
    assert all(isinstance(m["content"], str) and m["content"].strip() for m in messages)
    body = [r for r in roles if r != "system"]
    assert roles[: len(roles) - len(body)] == ["system"] * (len(roles) - len(body)), "system must lead"
    assert all(body[i] == ("user" if i % 2 == 0 else "assistant") for i in range(len(body))), roles


# --------------------------------------------------------------------------------------------------
# Tiny samples of the other input formats (for tests)
# --------------------------------------------------------------------------------------------------
ALPACA = [
    {"instruction": "Name three primary colours.", "input": "", "output": "Red, yellow and blue."},
    {"instruction": "Summarise the text in one sentence.",
     "input": "The town council agreed to keep the swimming pool open until nine in the evening during the "
              "summer holidays, after hundreds of residents signed a petition asking for longer hours.",
     "output": "After a petition, the council extended the pool's summer opening hours to 9 p.m."},
    {"instruction": "Convert the temperature from Celsius to Fahrenheit.", "input": "25 °C",
     "output": "25 °C is 77 °F (25 × 9/5 + 32)."},
    {"instruction": "Write a haiku about autumn.", "input": "",
     "output": "Red leaves drift and fall\ncold wind hums along the lane\nthe old oak stands bare"},
    {"instruction": "Classify the animal as a mammal, bird, reptile or fish.", "input": "Penguin",
     "output": "Bird."},
    {"instruction": "Write a Python expression that squares every number in the list.", "input": "nums = [1, 2, 3]",
     "output": "[n * n for n in nums]"},
    {"instruction": "Give one tip for staying focused while studying.", "input": "",
     "output": "Put your phone in another room and work in 25-minute blocks with short breaks."},
    {"instruction": "Translate into German.", "input": "The street is very long.",
     "output": "Die Straße ist sehr lang."},
]

SHAREGPT = [
    {"id": "sg-0", "conversations": [
        {"from": "human", "value": "What is the capital of Canada?"},
        {"from": "gpt", "value": "Ottawa."},
    ]},
    {"id": "sg-1", "conversations": [
        {"from": "system", "value": "You are a terse assistant."},
        {"from": "human", "value": "How many legs does a spider have?"},
        {"from": "gpt", "value": "Eight."},
    ]},
    {"id": "sg-2", "conversations": [
        {"from": "human", "value": "Suggest a name for a grey cat."},
        {"from": "gpt", "value": "How about Pebble?"},
        {"from": "human", "value": "Something more elegant?"},
        {"from": "gpt", "value": "Perhaps Silvia or Earl Grey."},
    ]},
    {"id": "sg-3", "conversations": [
        {"from": "human", "value": "Write a Python line that prints the numbers 1 to 3."},
        {"from": "gpt", "value": "```python\nfor i in range(1, 4):\n    print(i)\n```"},
    ]},
    {"id": "sg-4", "conversations": [
        {"from": "system", "value": "Answer in Spanish."},
        {"from": "human", "value": "What colour is the sky on a clear day?"},
        {"from": "gpt", "value": "El cielo es azul en un día despejado. ☀️"},
    ]},
    {"id": "sg-5", "conversations": [
        {"from": "human", "value": "Is 17 a prime number?"},
        {"from": "gpt", "value": "Yes. 17 has no divisors other than 1 and itself."},
        {"from": "human", "value": "And 21?"},
        {"from": "gpt", "value": "No, 21 = 3 × 7."},
    ]},
]

PROMPT_COMPLETION = [
    {"prompt": "The opposite of 'ancient' is", "completion": " 'modern'."},
    {"prompt": "Q: What is 12 times 12?\nA:", "completion": " 144"},
    {"prompt": "Complete the proverb: Actions speak louder", "completion": " than words."},
    {"prompt": [{"role": "user", "content": "Give me a synonym for 'happy'."}],
     "completion": [{"role": "assistant", "content": "Cheerful."}]},
    {"prompt": [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "How many days are in a leap year?"}],
     "completion": [{"role": "assistant", "content": "366 days."}]},
    {"prompt": [{"role": "user", "content": "Say hello in Chinese."}],
     "completion": [{"role": "assistant", "content": "你好 (nǐ hǎo)."}]},
]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    conversations = build_records()
    rows = []
    for i, messages in enumerate(conversations):
        validate(messages)
        rows.append({"id": f"sample-{i:03d}", "messages": messages})
    write_jsonl(ASSETS / "sample.jsonl", rows)
    write_jsonl(REPO / "tests" / "data" / "sample_alpaca.jsonl", ALPACA)
    write_jsonl(REPO / "tests" / "data" / "sample_sharegpt.jsonl", SHAREGPT)
    write_jsonl(REPO / "tests" / "data" / "sample_prompt_completion.jsonl", PROMPT_COMPLETION)
    n_sys = sum(1 for r in rows if r["messages"][0]["role"] == "system")
    n_multi = sum(1 for r in rows if sum(m["role"] == "user" for m in r["messages"]) > 1)
    print(f"sample.jsonl: {len(rows)} records ({n_sys} with system, {n_multi} multi-turn); "
          f"alpaca {len(ALPACA)}, sharegpt {len(SHAREGPT)}, prompt_completion {len(PROMPT_COMPLETION)}")


if __name__ == "__main__":
    main()
