# The debug layer (painting, high-water marks, usage histogram, end magic), the same as the
# task layer uses it, and the direct backend (its cases skip unless configured with
# -DVMSTACK_VMAP=OFF). Each case runs its configuration in a forked child. The debug and
# debug_tasks cases also run in the aarch64 cross build (label cross).
vms_test(debug LABELS unit death cross)
vms_test(debug_tasks LABELS unit death cross)
vms_test(direct LABELS unit death)
