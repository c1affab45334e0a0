"""Our own code-generation prompts: small, varied Python function-writing tasks.

Written for biglittle (Apache-2.0 like the rest of it). No references: the benchmark reports
speed and agreement with the big model's own output on these.
"""

CODE_PROMPTS: tuple[tuple[str, str], ...] = (
    ("fib", "Write a Python function `fib(n)` that returns the n-th Fibonacci number, with fib(0) = 0, using iteration."),
    ("is_prime", "Write a Python function `is_prime(n: int) -> bool` that tells whether n is a prime number."),
    ("reverse_words", "Write a Python function that reverses the order of the words in a sentence, keeping single spaces between them."),
    ("palindrome", "Write a Python function that checks whether a string is a palindrome, ignoring case, spaces and punctuation."),
    ("flatten", "Write a Python function `flatten(items)` that flattens an arbitrarily nested list of lists into one flat list."),
    ("word_count", "Write a Python function that takes a text and returns a dict mapping each lower-cased word to how often it occurs."),
    ("binary_search", "Write a Python function `binary_search(xs, target)` that returns the index of target in the sorted list xs, or -1."),
    ("merge_sorted", "Write a Python function that merges two sorted lists into one sorted list in linear time, without calling sort."),
    ("roman", "Write a Python function `to_roman(n: int) -> str` that converts an integer from 1 to 3999 to a Roman numeral."),
    ("anagrams", "Write a Python function that groups a list of words into lists of anagrams of each other."),
    ("matrix_mul", "Write a Python function that multiplies two matrices given as lists of lists, raising ValueError if the shapes do not match."),
    ("dedupe", "Write a Python function that removes duplicates from a list while keeping the first occurrence of each item in order."),
    ("parse_csv_line", "Write a Python function that splits one CSV line into fields, honouring double-quoted fields that contain commas."),
    ("lru_cache", "Write a Python class `LRUCache` with `get(key)` and `put(key, value)` methods and a fixed capacity, evicting the least recently used key."),
    ("balanced", "Write a Python function that checks whether the brackets (), [] and {} in a string are balanced."),
    ("chunks", "Write a Python generator `chunks(xs, size)` that yields successive lists of at most `size` items from an iterable."),
    ("gcd_lcm", "Write two Python functions, `gcd(a, b)` with Euclid's algorithm and `lcm(a, b)` built on it."),
    ("running_mean", "Write a Python function that returns the moving average of a list of numbers over a window of k items."),
    ("caesar", "Write a Python function `caesar(text, shift)` that applies a Caesar cipher to letters and leaves other characters unchanged."),
    ("dijkstra", "Write a Python function that computes shortest path lengths from a start node with Dijkstra's algorithm, given a dict of dicts of edge weights."),
    ("json_paths", "Write a Python function that lists every key path (like 'a.b.0.c') to a leaf value in a nested structure of dicts and lists."),
    ("rle", "Write Python functions that run-length encode a string ('aaab' -> 'a3b1') and decode it back."),
)
