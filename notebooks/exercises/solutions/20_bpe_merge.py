"""Solution to exercise 20: one BPE merge step."""


def merge_pair(parts, pair):
    """Join every non-overlapping occurrence of ``pair`` in ``parts``, scanning left to right."""
    merged, i = [], 0
    while i < len(parts):
        if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
            merged.append(parts[i] + parts[i + 1])
            i += 2                                    # both pieces are used up
        else:
            merged.append(parts[i])
            i += 1
    return merged
