public class Hello {
    public static void main(String[] args) throws Exception {
        System.out.println("java-app started");
        System.err.println("java-app stderr");
        Thread.sleep(600_000);
    }
}
