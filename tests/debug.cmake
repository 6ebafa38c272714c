# The debug layer (painting, high-water marks, usage histogram, end magic), the same as the
# task layer uses it, and the direct backend (its cases skip unless configured with
# -DVMSTACK_VMAP=OFF). Each case runs its configuration in a forked child.
vms_test(debug LABELS unit death)
vms_test(debug_tasks LABELS unit death)
vms_test(direct LABELS unit death)
