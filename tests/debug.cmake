# The debug layer (painting, high-water marks, usage histogram, end magic).
# Each case runs its configuration in a forked child.
vms_test(debug LABELS unit death)
